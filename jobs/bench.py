"""make bench: throughput of decoding alone and of the whole pipeline on a 1080p30 kiosk clip.

Renders (once, cached under cache/bench/) a generated 1080p30 H.264 kiosk clip of --seconds with
0-3 visitors whose faces come from the validation part of UTKFace-dev (faces the shipped model
never trained on), then prints:
  - decode-only throughput with PyAV, same threading and frame picking as the pipeline;
  - the full pipeline (DirectRunner, each --workers value) in video-seconds per wall-second,
    its ratio to decode-only, the per-stage time (summed over workers), and peak memory;
  - the visitor-count and demographic score of the run against the clip's ground truth.
With --kiosk-day MINUTES it measures the decoding gate instead: a generated 1080p30 kiosk day
(visitors in busy stretches, a quarter of the time; the empty scene with camera grain between)
analysed with decode.gate off and on, each run's throughput, frames decoded and skipped, score,
and the two runs compared visitor by visitor (paired). With --runners it measures scaling:
--copies links to the clip in one folder, analysed by the DirectRunner with 1 and 2 workers
and by the DaskRunner on a local cluster of 1 and 2 workers (when the dask extra is installed),
each once, in video-seconds per wall-second; the wall time includes starting the runner (a Dask
cluster's processes too).
Figures are printed, not asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from jobs import analyze
from jobs.cli import EXIT_OK, ArgumentParser, UserError, run, setup_logging
from model.metrics import format_comparison
from pipelines.frames import VideoError, VideoReader
from schemas.views import connect
from simulation import SimulationError
from simulation.clip_maker import RENDERER, render_clip
from simulation.ground_truth import truth_path_for
from simulation.photos import held_out, open_faces
from simulation.render_options import RenderOptions, kiosk_day
from simulation.scoring import compare, score

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FACES = REPO.parent / "shared" / "data" / "UTKFace-dev.tar.gz"
STAGES = ("decode", "detect", "align", "embed", "infer", "track", "write")
RUNNERS = (("DirectRunner", 1), ("DirectRunner", 2), ("DaskRunner", 1), ("DaskRunner", 2))


def bench_clip(faces: Path, seconds: float, seed: int) -> Path:
    opt = RenderOptions(
        width=1920, height=1080, fps=30, duration_s=seconds, seed=seed, visitors_max=3
    )
    return cached_clip(f"bench_1080p30_{int(seconds)}s_seed{seed}", faces, opt)


def kiosk_day_clip(faces: Path, minutes: float, seed: int) -> Path:
    opt = kiosk_day(minutes=minutes, seed=seed)
    return cached_clip(f"kioskday_{minutes:g}min_seed{seed}", faces, opt)


def cached_clip(stem: str, faces: Path, opt: RenderOptions) -> Path:
    """The clip rendered once into cache/bench/, named for its options and the renderer's
    version (redrawn when the drawing changes)."""
    clip = REPO / "cache" / "bench" / f"{stem}_r{RENDERER}.mp4"
    if clip.exists():
        return clip
    if not faces.exists():
        raise UserError(f"face source not found: {faces} (give --faces UTKFace.tar.gz or a CSV)")
    started = time.perf_counter()
    try:
        render_clip(clip, held_out(open_faces(faces)), opt)
    except SimulationError as exc:
        clip.unlink(missing_ok=True)  # never leave a half-written clip for the next run to reuse
        raise UserError(str(exc)) from None
    print(f"rendered {clip.name} in {time.perf_counter() - started:.1f} s")
    return clip


def gate_runs(clip: Path, extra: list[str]) -> dict[bool, dict]:
    """The clip analysed with the decoding gate off, then on (one worker each, so the two wall
    times compare the work, not the scheduling); each run's summary, frame counts and score."""
    if "--config" in extra:
        raise UserError("--kiosk-day sets decode.gate through its own --config: give flags instead")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for gate in (False, True):
            site, out = Path(tmp, f"gate_{gate}.yaml"), Path(tmp, f"out_{gate}")
            site.write_text(f"decode: {{gate: {str(gate).lower()}}}\n")
            argv = ["--input", str(clip), "--output", str(out), "--config", str(site)]
            argv += ["--workers", "1", "--no-progress", *extra]
            started = time.perf_counter()
            summary = analyze.analyse(*analyze.parse_args(argv))
            summary["wall_total_s"] = time.perf_counter() - started
            decoded, skipped = (
                connect(str(out))
                .execute("SELECT sum(frames_decoded), sum(frames_skipped) FROM videos")
                .fetchone()
            )
            summary.update(frames_decoded=decoded, frames_skipped=skipped)
            summary["result"] = score(truth_path_for(clip), out)
            runs[gate] = summary
    return runs


def report_gate(clip: Path, decode: dict, runs: dict[bool, dict]) -> None:
    print(
        f"\n{clip.name}: decode only (PyAV, every frame decoded, {decode['frames_picked']} "
        f"picked): {decode['video_s_per_s']:.2f} video-s per s"
    )
    print("pipeline with the decoding gate off, then on (DirectRunner, 1 worker):")
    for gate, s in runs.items():
        sc = s["result"].to_dict()
        print(
            f"  gate {'on ' if gate else 'off'}: {s['video_seconds']:.0f} video-s in "
            f"{s['wall_total_s']:.1f} s = {s['video_seconds'] / s['wall_total_s']:.2f} video-s "
            f"per s; frames decoded {s['frames_decoded']}, skipped {s['frames_skipped']}; "
            f"visitors true/predicted {sc['true_visitors']}/{sc['predicted_visitors']}, matched "
            f"{sc['matched']}, gender {_fmt(sc['gender_accuracy'], '.3f')}, age MAE "
            f"{_fmt(sc['age_mae'], '.2f')}"
        )
        rate = s["video_seconds"] / s["wall_total_s"]
        stages = ", ".join(f"{k} {s['stages_ms'].get(k, 0) / 1000:.1f} s" for k in STAGES)
        print(f"    {rate / decode['video_s_per_s']:.2f}x decode-only; {stages}")
    own, children = peak_memory_mb()
    print(f"  peak memory: driver {own:.0f} MiB, largest worker/child {children:.0f} MiB")
    c = compare([runs[True]["result"]], [runs[False]["result"]])
    print(format_comparison(c, "gate on", "gate off", unit="visitors"))
    print(f"  matched only with the gate on {c['matched_only_a']}, only off {c['matched_only_b']}")
    off, on = runs[False]["wall_total_s"], runs[True]["wall_total_s"]
    on_rate = runs[True]["video_seconds"] / on
    figures = {
        "decode_video_s_per_s": round(decode["video_s_per_s"], 3),
        "gate_off_wall_s": round(off, 1),
        "gate_on_wall_s": round(on, 1),
        "gate_speedup": round(off / on, 2),
        "gate_on_over_decode": round(on_rate / decode["video_s_per_s"], 2),
    }
    print(json.dumps(figures))


def worker_counts(text: str) -> list[int]:
    try:
        counts = [int(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None
    if min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts must be at least 1")
    return counts


def decode_only(clip: Path, fps: float, threads: int) -> dict:

    started = time.perf_counter()
    try:
        with VideoReader(str(clip), fps=fps, threads=threads) as reader:
            picked = sum(1 for _ in reader.frames())
            seconds = reader.duration_s
            decoded = reader.info.frames_decoded
    except VideoError as e:
        raise UserError(f"cannot benchmark {clip}: {e}") from None
    wall = time.perf_counter() - started
    return {
        "video_s": seconds,
        "wall_s": wall,
        "frames_decoded": decoded,
        "frames_picked": picked,
        "video_s_per_s": seconds / wall,
    }


def pipeline(clip: Path, workers: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        args, beam_args = analyze.parse_args(
            [
                "--input",
                str(clip),
                "--output",
                out,
                "--workers",
                str(workers),
                "--no-progress",
                *extra,
            ]
        )
        started = time.perf_counter()
        summary = analyze.analyse(args, beam_args)
        summary["wall_total_s"] = time.perf_counter() - started

        summary["score"] = score(truth_path_for(clip), out).to_dict()
    return summary


def peak_memory_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its (worker) children, MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def report(decode: dict, runs: dict[int, dict]) -> None:
    print(
        f"\ndecode only (PyAV, {decode['frames_decoded']} frames decoded, "
        f"{decode['frames_picked']} picked): {decode['video_s']:.0f} video-s in "
        f"{decode['wall_s']:.1f} s = {decode['video_s_per_s']:.2f} video-s per s"
    )
    for workers, s in runs.items():
        rate = s["video_seconds"] / s["wall_total_s"]
        print(
            f"\npipeline, DirectRunner, {workers} worker(s): {s['video_seconds']:.0f} video-s in "
            f"{s['wall_total_s']:.1f} s = {rate:.2f} video-s per s "
            f"({rate / decode['video_s_per_s']:.0%} of decode-only)"
        )
        total = sum(s["stages_ms"].get(k, 0) for k in STAGES) or 1
        for stage in STAGES:
            ms = s["stages_ms"].get(stage, 0)
            print(f"  {stage:<7} {ms / 1000:7.1f} s  {ms / total:5.1%}")
        if workers == 1:
            # Decoding and detection run in threads of their own beside the rest of the
            # worker's loop, so stage times overlap: their sum over the wall time is how many
            # cores the worker kept busy on average (start-up and Beam's own work not counted).
            wall = s["wall_total_s"]
            print(
                f"  stages sum to {total / 1000:.1f} s in {wall:.1f} s of wall time: "
                f"{total / 1000 / wall:.2f} cores busy on average"
            )
        sc = s["score"]
        print(
            f"  visitors true/predicted {sc['true_visitors']}/{sc['predicted_visitors']} "
            f"(count error {sc['count_error']:+d}), matched {sc['matched']}, gender accuracy "
            f"{_fmt(sc['gender_accuracy'], '.3f')}, age MAE {_fmt(sc['age_mae'], '.2f')} years"
        )
    own, children = peak_memory_mb()
    print(f"\npeak memory: driver {own:.0f} MiB, largest worker/child {children:.0f} MiB")
    print(
        json.dumps(
            {
                "decode_video_s_per_s": round(decode["video_s_per_s"], 3),
                **{
                    f"pipeline_{w}w_video_s_per_s": round(s["video_seconds"] / s["wall_total_s"], 3)
                    for w, s in runs.items()
                },
                "peak_driver_mib": round(own),
                "peak_child_mib": round(children),
            }
        )
    )


def compare_runners(clip: Path, copies: int, extra: list[str]) -> list[dict]:
    """Each of RUNNERS once on ``copies`` links to ``clip`` (distinct names: distinct videos)."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "videos", "bench")
        folder.mkdir(parents=True)
        for i in range(copies):
            (folder / f"copy{i + 1}_{clip.name}").symlink_to(clip.resolve())
        for name, workers in RUNNERS:
            if name == "DaskRunner" and importlib.util.find_spec("distributed") is None:
                print(f"{name}: skipped (pip install -e '.[dask]')")
                continue
            argv = ["--input", str(folder), "--output", str(Path(tmp, f"{name}{workers}"))]
            argv += ["--runner", name, "--workers", str(workers), "--no-progress", *extra]
            started = time.perf_counter()
            summary = analyze.analyse(*analyze.parse_args(argv))
            wall = time.perf_counter() - started
            runs.append({"runner": name, "workers": workers, "wall_s": round(wall, 1), **summary})
            rate = summary["video_seconds"] / wall
            print(
                f"{name}, {workers} worker(s): {summary['videos_ok']} videos ok, "
                f"{summary['video_seconds']:.0f} video-s in {wall:.1f} s = {rate:.2f} "
                f"video-s per s ({summary['visitors']} visitors)",
                flush=True,
            )
    print(
        json.dumps(
            {
                f"{r['runner']}_{r['workers']}w_video_s_per_s": round(
                    r["video_seconds"] / r["wall_s"], 3
                )
                for r in runs
            }
        )
    )
    return runs


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        prog="python -m jobs.bench",
        description=__doc__.splitlines()[0],
        epilog="Other options are passed to jobs.analyze (e.g. --model).",
    )
    p.add_argument(
        "--faces",
        type=Path,
        default=DEFAULT_FACES,
        help="UTKFace .tar.gz/folder or path,age,gender CSV for the clip's visitors",
    )
    p.add_argument("--seconds", type=float, default=60.0, help="clip length (default 60)")
    p.add_argument("--seed", type=int, default=1, help="clip seed (default 1)")
    p.add_argument(
        "--workers",
        type=worker_counts,
        default="1,2",
        help="DirectRunner workers to try, comma-separated (default 1,2)",
    )
    p.add_argument("--clip", type=Path, help="benchmark this clip instead (needs its truth JSON)")
    p.add_argument(
        "--runners",
        action="store_true",
        help="compare runners instead: DirectRunner and DaskRunner, 1 and 2 workers each",
    )
    p.add_argument("--copies", type=int, default=3, help="--runners: links to the clip (3)")
    p.add_argument(
        "--kiosk-day",
        type=float,
        metavar="MINUTES",
        help="measure the decoding gate instead, on a generated kiosk day of MINUTES",
    )
    args, extra = p.parse_known_args(argv)
    setup_logging()
    if args.kiosk_day is not None:
        if args.kiosk_day <= 0:
            raise UserError("--kiosk-day must be a positive number of minutes")
        clip = kiosk_day_clip(args.faces, args.kiosk_day, args.seed)
        settings = analyze.settings_for(analyze.parse_args(["--input", str(clip), *extra])[0])
        decode = decode_only(clip, settings.decode.fps, settings.decode.threads)
        report_gate(clip, decode, gate_runs(clip, extra))
        return EXIT_OK
    if args.runners:
        if args.copies < 1:
            raise UserError("--copies must be at least 1")
        compare_runners(
            args.clip or bench_clip(args.faces, args.seconds, args.seed), args.copies, extra
        )
        return EXIT_OK
    if args.clip and not truth_path_for(args.clip).is_file():  # scored after each run: check first
        raise UserError(f"no ground truth {truth_path_for(args.clip)} for --clip {args.clip}")
    clip = args.clip or bench_clip(args.faces, args.seconds, args.seed)
    settings = analyze.settings_for(analyze.parse_args(["--input", str(clip), *extra])[0])
    decode = decode_only(clip, settings.decode.fps, settings.decode.threads)
    runs = {w: pipeline(clip, w, extra) for w in args.workers}
    report(decode, runs)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run(main))
