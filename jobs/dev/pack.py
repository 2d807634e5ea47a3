"""Repack face chips small, to carry a training set to another machine (e.g. a rented GPU).

``python -m jobs.dev.pack --data ../shared/data/UTKFace-dev.tar.gz --size 96 --out utk96.tar.gz``

Every UTKFace-named chip (its centred square, as training reads it) is resized to ``size`` x
``size`` and stored as WebP under its original name, so labels and the seeded validation split
(both read from names) are unchanged.
UTKFace-dev (20,707 chips, 93 MB) packs to about 40 MB at 96 px, quality 90. Train from the pack
with the same config; ``crop`` still applies to the (smaller) chip.
"""

from __future__ import annotations

import io
import sys
import tarfile

import cv2

from jobs.cli import ArgumentParser, UserError, check_writable, one_line_warnings, run
from model import datasets


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when done; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_pack, argv)


def _pack(argv: list[str] | None) -> int:
    ap = ArgumentParser(prog="python -m jobs.dev.pack", description=__doc__)
    ap.add_argument("--data", required=True, help="UTKFace folder or .tar.gz")
    ap.add_argument("--size", type=int, default=96, help="side of the packed chips, px")
    ap.add_argument("--quality", type=int, default=90, help="WebP quality 1-100")
    ap.add_argument("--out", required=True, help="output .tar or .tar.gz")
    args = ap.parse_args(argv)
    one_line_warnings()
    if not datasets.is_tar(args.out):
        raise UserError("--out must end in .tar, .tar.gz or .tgz")
    if not 16 <= args.size <= 1024 or not 1 <= args.quality <= 100:
        raise UserError("--size must be 16-1024 px and --quality 1-100")
    check_writable(args.out)  # before the chips are loaded, not after
    try:
        records = datasets.scan_utkface(args.data)
        # prepare_chip at crop 1.0: the centred square, as training reads a chip
        images, ok = datasets.load_images(records, args.data, args.size, crop=1.0)
    except datasets.DataError as e:
        raise UserError(str(e)) from None
    params = [cv2.IMWRITE_WEBP_QUALITY, args.quality]
    mode = "w" if args.out.endswith(".tar") else "w:gz"
    with tarfile.open(args.out, mode) as tar:
        for record, image, good in zip(records, images, ok, strict=True):
            if not good:
                continue
            data = cv2.imencode(".webp", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)[1]
            info = tarfile.TarInfo(record.path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data.tobytes()))
    print(f"packed {int(ok.sum())} of {len(records)} chips at {args.size}px -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
