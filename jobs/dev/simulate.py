"""Render a synthetic kiosk clip with ground truth.

    python -m jobs.dev.simulate --faces ../shared/data/UTKFace-dev.tar.gz --out clip.mp4 --minutes 1

writes ``clip.mp4`` and ``clip.truth.json`` (:mod:`simulation.ground_truth` has the truth format).
``--faces`` repeats: visitors with masks and expressions come from a mask set and an emotion set.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from jobs.cli import EXIT_OK, ArgumentParser, UserError, one_line_warnings, run
from simulation import SimulationError
from simulation.clip_maker import render_clip
from simulation.ground_truth import truth_path_for
from simulation.photos import FaceMix, held_out, open_faces
from simulation.render_options import RenderOptions

EPILOG = """\
face sources:
  a UTKFace .tar.gz or folder   chips named <age>_<gender>_<race>_<date>.jpg.chip.jpg
                                (gender 0 male, 1 female); malformed names are skipped
  a CSV, or a folder with one   header path,age,gender (the training manifest's format);
                                path relative to the CSV, gender 0 male, 1 female
  an emotion set (.tar.gz or    FER-2013 layout <split>/<class>/<file>.jpg; the visitor's truth
    folder)                     has its emotion, no age or gender
  a mask set (.tar.gz, folder   labels.csv (file,label,photo,x1,y1,x2,y2) beside loose crops;
    or its labels.csv)          the truth has the mask status, no age or gender
Repeat --faces to mix sources: each visitor comes from one of them, in equal shares. Each
visitor is a different face, drawn with --seed; the same options and seed give the same clip.
--held-out keeps the faces the model never trained on: config/train.yaml's validation split of
UTKFace and of the mask set (by photo), the val folder of an emotion set.
UTKFace is for non-commercial research only: never commit clips rendered from it.

examples:
  python -m jobs.dev.simulate --faces ../shared/data/UTKFace-dev.tar.gz --out kiosk.mp4 --minutes 1
  python -m jobs.dev.simulate --faces faces.csv --out small.mp4 --seconds 10 --size 640x360 --fps 15
  python -m jobs.dev.simulate --faces ../shared/data/UTKFace-dev.tar.gz \
      --faces ../shared/data/fer2013-dev.tar.gz --faces ../shared/data/masks-dev.tar.gz \
      --held-out --out mixed.mp4 --minutes 2
"""


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def _range(text: str) -> tuple[float, float]:
    try:
        parts = [float(v) for v in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX, got {text!r}")
    return parts[0], parts[1]


def _start(text: str) -> str:
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError("expected an ISO time like 2024-05-01T09:30:00") from None


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m jobs.dev.simulate",
        description="Render a synthetic kiosk clip (visitors walk in, linger, leave) and write "
        "its ground truth to <out>.truth.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--faces",
        required=True,
        action="append",
        help="labelled faces: .tar.gz, folder or .csv of UTKFace, an emotion or a mask set; "
        "repeat to mix sets",
    )
    p.add_argument("--out", required=True, help="clip to write (.mp4, .mkv, .mov or .avi)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="clip length in minutes")
    length.add_argument("--seconds", type=float, help="clip length in seconds (default 60)")
    p.add_argument("--size", type=_size, default=(1920, 1080), help="WxH, even (default 1920x1080)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate (default 30)")
    p.add_argument(
        "--codec",
        default="libx264",
        help="libx264 (default), mpeg4, or libx265 when this PyAV build has it (h264/h265 alias)",
    )
    p.add_argument("--crf", type=int, help="quality for libx264/libx265 (default 23/28)")
    p.add_argument("--bitrate", type=int, help="bits per second (instead of --crf; mpeg4 uses it)")
    p.add_argument("--preset", help="x264/x265 preset (default veryfast / ultrafast)")
    p.add_argument(
        "--visitors-max", type=int, default=3, help="most visitors in frame at once (default 3)"
    )
    p.add_argument("--visitors-total", type=int, help="cap on visitors in the whole clip")
    p.add_argument("--linger", type=_range, default=(4.0, 20.0), help="seconds, MIN:MAX (4:20)")
    p.add_argument("--walk", type=_range, default=(1.5, 3.0), help="walk in/out seconds (1.5:3)")
    p.add_argument(
        "--gap", type=_range, default=(0.5, 8.0), help="seconds between visitors (0.5:8)"
    )
    p.add_argument(
        "--face-frac",
        type=_range,
        default=(0.11, 0.23),
        help="face box side / frame height while lingering, MIN:MAX (0.11:0.23)",
    )
    _identity_options(p)
    p.add_argument("--start", type=_start, help="wall-clock start, written as creation_time")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--held-out",
        action="store_true",
        help="only faces the model never trained on (config/train.yaml's validation split; an "
        "emotion set's val folder): use it to measure a model on video",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def _identity_options(p: argparse.ArgumentParser) -> None:
    """The cases identity is measured on (``simulation.returns``)."""
    p.add_argument(
        "--returns",
        type=float,
        default=0.0,
        help="share of visits made by someone who came before (the same face; default 0)",
    )
    p.add_argument(
        "--return-gap",
        type=float,
        default=60.0,
        help="seconds a returning visitor stays away at least (default 60)",
    )
    p.add_argument(
        "--passers",
        type=float,
        default=0.0,
        help="share of lingers (8 s or longer) a passer-by close to the camera hides for "
        "3-5 s, breaking the track (default 0)",
    )


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when written; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_simulate, argv)


def _options(args: argparse.Namespace) -> RenderOptions:
    """The render options the parsed command line asks for (not yet validated)."""
    seconds = args.minutes * 60 if args.minutes is not None else args.seconds or 60.0
    return RenderOptions(
        width=args.size[0],
        height=args.size[1],
        fps=args.fps,
        duration_s=seconds,
        codec=args.codec,
        crf=args.crf,
        bitrate=args.bitrate,
        preset=args.preset,
        seed=args.seed,
        visitors_max=args.visitors_max,
        visitors_total=args.visitors_total,
        walk_s=args.walk,
        linger_s=args.linger,
        gap_s=args.gap,
        face_frac=args.face_frac,
        start_time=args.start,
        returns=args.returns,
        return_gap_s=args.return_gap,
        passers=args.passers,
    )


def _faces(paths: list[str], only_held_out: bool) -> FaceMix:
    """The face sources named on the command line, each once."""
    seen = set()
    for path in paths:
        if Path(path).resolve() in seen:
            raise SimulationError(f"--faces {path} is given more than once")
        seen.add(Path(path).resolve())
    sources = [open_faces(path) for path in paths]
    return FaceMix([held_out(s) for s in sources] if only_held_out else sources)


def _simulate(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    one_line_warnings()  # a skipped malformed face file: one line, as in every job
    opt = _options(args)
    t0 = time.perf_counter()
    bar = None
    try:
        opt.validate()
        faces = _faces(args.faces, args.held_out)
        if not args.quiet and sys.stderr.isatty():
            bar = tqdm(total=opt.frames, unit="frame", desc=Path(args.out).name)
        truth = render_clip(args.out, faces, opt, progress=bar.update if bar else None)
    except SimulationError as exc:
        raise UserError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    if not args.quiet:
        clip = truth["clip"]
        print(
            f"wrote {args.out} ({clip['width']}x{clip['height']} {clip['fps']:g} fps "
            f"{clip['duration_s']:.1f} s {clip['codec']}, {len(truth['visitors'])} visitors) "
            f"and {truth_path_for(args.out)} in {wall:.1f} s"
        )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
