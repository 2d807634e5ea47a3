"""One-off: render the shipped demo clip ``demo/kiosk_20240501_100000.mp4`` and its truth JSON.

Provenance of the only face in it: the portrait of NASA astronaut Eileen Collins that
scikit-image ships as ``skimage/data/astronaut.png`` inside its wheel (``skimage.data.astronaut()``;
512x512 RGB). scikit-image documents it as "downloaded from the NASA Great Images database
<https://flic.kr/p/r9qvLn>. No known copyright restrictions, released into the public domain."
It is a work of NASA, a US federal agency, and so in the public domain in the United States.
The PNG used (sha256 below) came from the PyPI wheel scikit_image-0.26.0 (cp311, manylinux);
scikit-image is not a dependency of this project and is not installed: this script reads the PNG
straight out of a downloaded wheel (or from a PNG path) given on the command line::

    pip download --no-deps scikit-image==0.26.0 -d /tmp/ski
    python -m simulation.make_demo_clip --source /tmp/ski/scikit_image-0.26.0-*.whl

The face is cut from the portrait as a 173x173 square around the eyes and mouth, placed like a
UTKFace chip (eyes at about 42 % of the height), and rendered as one visitor who walks in,
lingers and leaves in a 10 s 640x360 H.264 clip. Truth labels: gender female; age 41, an
estimate (Collins was born in November 1956; the portrait's date is not given by the source and
is believed to be from the late 1990s), so expect a label uncertainty of a few years.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

from simulation import SimulationError
from simulation.clip_maker import render_clip
from simulation.photos import LabelledPhoto
from simulation.render_options import RenderOptions

ASTRONAUT_MEMBER = "skimage/data/astronaut.png"
ASTRONAUT_SHA256 = "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"
# (left, top, side) of the face square in the 512x512 portrait: eye midpoint ~(225, 100).
FACE_BOX = (139, 27, 173)
AGE, GENDER = 41, "female"
DEMO_OPTIONS = RenderOptions(
    width=640,
    height=360,
    fps=30,
    duration_s=10.0,
    codec="libx264",
    crf=25,
    preset="slow",
    seed=7,
    visitors_max=1,
    visitors_total=1,
    walk_s=(1.5, 2.0),
    linger_s=(4.0, 6.0),
    gap_s=(0.5, 1.0),
    face_frac=(0.3, 0.33),
    start_time="2024-05-01T10:00:00",
)


def read_astronaut(source: Path) -> bytes:
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as whl:
            data = whl.read(ASTRONAUT_MEMBER)
    else:
        data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != ASTRONAUT_SHA256:
        raise SimulationError(f"astronaut.png sha256 {digest} is not the documented one")
    return data


def astronaut_face(data: bytes) -> LabelledPhoto:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    x, y, s = FACE_BOX
    chip = cv2.resize(img[y : y + s, x : x + s], (200, 200), interpolation=cv2.INTER_AREA)
    return LabelledPhoto(
        key="skimage astronaut.png (Eileen Collins, NASA)", age=AGE, gender=GENDER, image=chip
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulation.make_demo_clip", description=__doc__)
    p.add_argument("--source", required=True, type=Path, help="scikit-image wheel or astronaut.png")
    p.add_argument("--out", type=Path, default=Path("demo/kiosk_20240501_100000.mp4"))
    args = p.parse_args(argv)
    try:
        face = astronaut_face(read_astronaut(args.source))
        truth = render_clip(args.out, [face], DEMO_OPTIONS)
    except (OSError, KeyError, zipfile.BadZipFile, SimulationError) as exc:
        print(f"make_demo_clip: error: {exc}", file=sys.stderr)
        return 2
    if len(truth["visitors"]) != 1:
        print("make_demo_clip: error: the demo should show exactly one visitor", file=sys.stderr)
        return 1
    v = truth["visitors"][0]
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB): visitor {v['enter_s']}-{v['leave_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
