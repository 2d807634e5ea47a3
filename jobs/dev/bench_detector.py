"""Face detection cost per 1080p frame on one thread, for choosing a detector and its settings.

Samples frames evenly from the given clips (decoded as the pipeline decodes them, then scaled
to 1920x1080), or uses one synthetic frame, and times the configured detector's ``detect`` call
(the ``detector`` section of config/analyze.yaml, with ``--config site.yaml`` merged over it) for
each ``--max-side`` and ``--min-face`` given. Figures are printed, not asserted.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterable
from itertools import islice

import cv2
import numpy as np

from common.config import ConfigError
from jobs.cli import EXIT_OK, ArgumentParser, UserError, run, setup_logging
from pipelines.faces import FaceDetector, create_detector
from pipelines.frames import VideoError, VideoReader
from pipelines.settings import DetectorSettings, load_settings

FRAME_SIZE = (1920, 1080)


def sample_frames(paths: Iterable[str], per_clip: int, threads: int) -> list[np.ndarray]:
    """``per_clip`` frames spread over each clip, upright RGB at 1920x1080 (``threads``:
    decoding threads)."""

    frames = []
    for path in paths:
        try:
            seconds = _seconds(path, threads)
            with VideoReader(path, fps=per_clip / seconds, threads=threads) as reader:
                picked = [f.image for f in islice(reader.frames(), per_clip)]
        except VideoError as e:
            raise UserError(f"{path}: {e}") from None
        frames += [cv2.resize(image, FRAME_SIZE, interpolation=cv2.INTER_CUBIC) for image in picked]
    return frames


def _seconds(path: str, threads: int) -> float:
    """How long the clip is: what the container states, else (a raw stream, a recording cut
    short) the span found by decoding it once at a frame a second."""

    with VideoReader(path, fps=1.0, threads=threads) as probe:
        if probe.info.duration_s:
            return probe.info.duration_s
        for _ in probe.frames():
            pass
        return probe.duration_s


def synthetic_frame() -> np.ndarray:
    """Smooth noise at 1080p: something for the detector's first stage to scan, faces or not."""
    rng = np.random.default_rng(0)
    return cv2.resize(rng.integers(0, 255, (54, 96, 3), dtype=np.uint8), FRAME_SIZE)


def time_detector(detector: FaceDetector, frames: list[np.ndarray], repeat: int = 2) -> dict:
    """Milliseconds per ``detect`` call over ``frames``, ``repeat`` passes after a warm-up:
    median and best wall time, and median CPU time of the calling thread (less disturbed when
    other processes share the cores)."""
    detector.detect(frames[0])
    wall, cpu = [], []
    for _ in range(repeat):
        for frame in frames:
            t, c = time.perf_counter(), time.thread_time()
            detector.detect(frame)
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - t)
    return {
        "wall_ms": 1000.0 * float(np.median(wall)),
        "best_ms": 1000.0 * float(np.min(wall)),
        "cpu_ms": 1000.0 * float(np.median(cpu)),
    }


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m jobs.dev.bench_detector", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "videos", nargs="*", help="clips to sample frames from (default: one synthetic frame)"
    )
    p.add_argument(
        "--config",
        help="site YAML whose detector section is measured (e.g. name: yunet and its model)",
    )
    p.add_argument(
        "--max-side", type=int, nargs="+", help="detector.max_side values to try (default: config)"
    )
    p.add_argument(
        "--min-face",
        type=int,
        nargs="+",
        help="detector.min_face_px values to try (default: config)",
    )
    p.add_argument("--frames", type=int, default=12, help="frames sampled per clip (default 12)")
    return p


def variants(
    base: DetectorSettings, max_sides: list[int] | None, min_faces: list[int] | None
) -> list[DetectorSettings]:
    """The configured detector with each combination of the values asked for (each checked as
    the config would be)."""
    return [
        dataclasses.replace(base, max_side=side, min_face_px=face)
        for side in max_sides or [base.max_side]
        for face in min_faces or [base.min_face_px]
    ]


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when measured; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_bench, argv)


def _bench(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 1:
        raise UserError("--frames must be at least 1")
    setup_logging()

    try:
        settings = load_settings(args.config)
        tried = variants(settings.detector, args.max_side, args.min_face)
        detectors = [create_detector(d.name, **d.detector_options()) for d in tried]
    except (ConfigError, ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    if args.videos:
        frames = sample_frames(args.videos, args.frames, settings.decode.threads)
    else:
        frames = [synthetic_frame()]
    if not frames:
        raise UserError("no frames could be sampled from the clips given")
    width, height = FRAME_SIZE
    print(f"{len(frames)} frame(s) at {width}x{height}, {settings.detector.name}, 1 thread")
    for d, detector in zip(tried, detectors, strict=True):
        r = time_detector(detector, frames)
        found = sum(sum(f.score >= d.min_score for f in detector.detect(frame)) for frame in frames)
        print(
            f"max_side {d.max_side}, min_face_px {d.min_face_px}: {r['wall_ms']:.1f} ms/frame "
            f"median wall ({r['best_ms']:.1f} best, {r['cpu_ms']:.1f} thread CPU), "
            f"{found} faces >= min_score {d.min_score:g}"
        )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
