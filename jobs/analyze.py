"""python -m jobs.analyze --input videos/ : the nightly analysis job.

Reads every video under --input, writes the tables under --output (default output/), prints a
summary and a one-line JSON summary, and exits 0 (all inputs ok), 1 (some inputs failed, the rest
written) or 2 (usage or configuration error, nothing done). Options the job does not know are
handed to Apache Beam, so e.g. ``--runner DataflowRunner --project P --region R
--temp_location gs://...`` run the same pipeline on Dataflow.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import math
import shlex
import signal
import sys
import threading
import time
import uuid
from datetime import date
from pathlib import Path

from common.paths import is_remote
from jobs.cli import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    ArgumentParser,
    UserError,
    reader_may_leave,
    run,
    setup_logging,
)

log = logging.getLogger("jobs.analyze")
REPO = Path(__file__).resolve().parents[1]
LOCAL_RUNNER = "DirectRunner"
# Runners that would fetch a binary (Prism) or need a service we don't start.
DOWNLOADING_RUNNERS = {"prismrunner", "prism"}
KNOWN_RUNNERS = ("DirectRunner", "PortableRunner", "FlinkRunner", "SparkRunner", "DataflowRunner")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    from pipelines.settings import load_settings as default_settings

    defaults = default_settings()  # for the help text: the values live in config/analyze.yaml
    p = ArgumentParser(
        prog="python -m jobs.analyze",
        description="Find faces in recorded kiosk videos, follow each visitor, estimate age and "
        "gender once per visitor, and write Parquet tables (videos, visitors, detections).",
        epilog="Exit codes: 0 all inputs ok; 1 some inputs failed (the others are written); "
        "2 usage or configuration error. Unknown options are passed to Apache Beam.",
    )
    p.add_argument(
        "--input",
        required=True,
        help="video file, folder (searched recursively) "
        "or glob; local or any Beam filesystem (gs://, s3://, hdfs://)",
    )
    p.add_argument("--output", default="output", help="folder for the tables (default: output/)")
    p.add_argument("--config", help="site YAML merged over config/analyze.yaml")
    p.add_argument(
        "--fps",
        type=float,
        help=f"frames analysed per second of video (default {defaults.decode.fps:g})",
    )
    p.add_argument("--model", help="face model ONNX file (default: the shipped model)")
    p.add_argument(
        "--runner",
        help=f"Beam runner (default {defaults.runner.name}): DirectRunner, PortableRunner, "
        "FlinkRunner, SparkRunner, DataflowRunner",
    )
    p.add_argument(
        "--workers",
        type=int,
        help=f"DirectRunner worker processes (default {defaults.runner.workers})",
    )
    p.add_argument(
        "--detections",
        action="store_true",
        help="also write the per-frame detections table (off by default)",
    )
    p.add_argument(
        "--date",
        action="append",
        type=_day,
        metavar="YYYY-MM-DD",
        help="only videos that start on this date (repeatable)",
    )
    p.add_argument(
        "--since",
        type=_day,
        metavar="YYYY-MM-DD",
        help="only videos that start on or after this date",
    )
    p.add_argument(
        "--force", action="store_true", help="reanalyse every matched video, even unchanged ones"
    )
    p.add_argument(
        "--reprocess-model-changes",
        action="store_true",
        help="reanalyse videos last analysed with a different model version",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_known_args(argv)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


# Remote filesystems: the Beam extra (installed through ours, setup.py) and the module it brings.
# Beam registers some of them without it and fails only on first use (s3 needs boto3 then).
_FILESYSTEM_EXTRAS = {"gs": ("gcp", "google.cloud.storage"), "s3": ("aws", "boto3"),
                      "hdfs": ("hadoop", "hdfs")}  # fmt: skip


def check_filesystem(path: str, what: str) -> None:
    """A remote path needs its Beam filesystem installed. Checked before any work: without it
    Beam fails only where it first touches the path, for the output after every video."""
    if not is_remote(path):
        return
    scheme = path.split("://", 1)[0]
    if scheme in _FILESYSTEM_EXTRAS:
        extra, module = _FILESYSTEM_EXTRAS[scheme]
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a missing parent package (google.cloud)
            found = False
        if not found:
            raise UserError(
                f"{what} {path}: {scheme}:// needs Beam's {extra} extra; install it with "
                f"pip install -e '.[{extra}]'"
            )
        return
    from apache_beam.io.filesystems import FileSystems

    try:
        FileSystems.get_filesystem(path)
    except Exception:  # Beam raises ValueError or BeamIOError for an unknown scheme
        known = ", ".join(f"{s}://" for s in _FILESYSTEM_EXTRAS)
        raise UserError(
            f"{what} {path}: Beam has no filesystem for {scheme}:// ({known} do)"
        ) from None


def load_settings(args: argparse.Namespace):
    from pipelines.settings import SettingsError, load_settings

    try:
        settings = _command_line_overrides(load_settings(args.config), args)
    except SettingsError as e:
        raise UserError(str(e)) from None
    settings = settings.replace("model", path=_resolve_model(settings.model.path))
    if settings.detector.model is not None:
        # Absolute, so worker processes started elsewhere read the same file.
        model = settings.detector.model
        if not is_remote(model):
            model = str(Path(model).resolve())
        settings = settings.replace("detector", model=model)
    return settings


def _command_line_overrides(settings, args: argparse.Namespace):
    """The flags laid over the settings (each section checks its values again)."""
    if args.fps is not None:
        if not math.isfinite(args.fps) or args.fps <= 0:
            raise UserError("--fps must be a positive number")
        settings = settings.replace("decode", fps=args.fps)
    if args.model:
        settings = settings.replace("model", path=args.model)
    if args.runner:
        settings = settings.replace("runner", name=args.runner)
    if args.workers is not None:
        if args.workers < 1:
            raise UserError("--workers must be at least 1")
        settings = settings.replace("runner", workers=args.workers)
    if args.detections:
        settings = settings.replace("output", detections=True)
    return settings


def _resolve_model(path: str) -> str:
    if is_remote(path):
        return path
    candidate = Path(path)
    if not candidate.is_absolute() and not candidate.exists() and (REPO / path).exists():
        candidate = REPO / path
    if not candidate.exists():
        raise UserError(f"model file not found: {path} (give --model FILE)")
    return str(candidate.resolve())


def check_input(path: str, extensions: tuple[str, ...]) -> str:
    from pipelines.inputs import GLOB_CHARS, has_video_extension

    if is_remote(path):
        return path
    if not GLOB_CHARS & set(path) and not Path(path).exists():
        raise UserError(f"input not found: {path}")
    if Path(path).is_file() and not has_video_extension(path, extensions):
        raise UserError(
            f"{path} does not have a video extension ({', '.join(extensions)}); "
            "add its extension to input.extensions in a --config file"
        )
    # Globs too: the path is the video's identity in the tables, so one file reached by a
    # relative glob and by its folder must be the same row.
    return str(Path(path).resolve())


def prepare_output(path: str) -> str:
    if is_remote(path):
        return path
    out = Path(path).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"output folder {path} is not writable ({e.strerror})") from None
    return str(out)


def clear_temporaries(output: str) -> int:
    """Remove half-written files a killed run left behind (readers never saw them)."""
    from pipelines.tables import TEMP_SUFFIX

    if is_remote(output):
        return 0
    leftovers = list(Path(output).glob(f"*/**/.*{TEMP_SUFFIX}"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)


def read_manifest(output: str) -> dict:
    """What the output already holds, per input path: the incremental run's memory."""
    from pipelines.analyze import ManifestEntry
    from reports.views import TablesError, connect, fetch

    if is_remote(output):
        return {}
    sql = (
        "SELECT video, size_bytes, epoch_us(mtime) / 1e6, fingerprint, model_version, status, "
        "date, camera FROM videos"
    )
    try:
        rows = fetch(connect(output), sql)
    except TablesError as e:
        raise UserError(
            f"cannot read the tables already in {output} (move that file away): {e}"
        ) from None
    return {r[0]: ManifestEntry(*r[1:]) for r in rows}


def pipeline_options(settings, extra: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions

    name = settings.runner.name
    if name.lower() in DOWNLOADING_RUNNERS:
        raise UserError(f"runner {name} downloads its binary at run time; use {LOCAL_RUNNER}")
    if name not in KNOWN_RUNNERS and "." not in name:
        raise UserError(f"unknown runner {name!r}; use one of {', '.join(KNOWN_RUNNERS)}")
    flags = list(extra)
    if name == LOCAL_RUNNER:
        # Pin the DirectRunner to its in-process FnApiRunner: since Beam 2.68 a plain
        # DirectRunner may hand the job to Prism, which it would download first.
        # Several workers are separate processes (make_runner gives their command); Beam's own
        # "multi_processing" mode would replace that command with its noisy default.
        flags += [
            "--direct_running_mode=in_memory",
            f"--direct_num_workers={settings.runner.workers}",
        ]
        if not any(f.startswith("--default_sdk_harness_log_level") for f in extra):
            flags += ["--default_sdk_harness_log_level=WARNING"]  # worker processes: quiet
    else:
        flags += [f"--runner={name}"]
    usage = io.StringIO()  # argparse's usage dump, kept for its last line
    try:
        with contextlib.redirect_stderr(usage):
            options = PipelineOptions(flags)
            known = options.get_all_options()  # Beam parses lazily: a bad value would stop it
            unknown = set(options.get_all_options(retain_unknown_options=True)) - set(known)
    except SystemExit:
        reason = (usage.getvalue().strip().splitlines() or [""])[-1].split("error: ")[-1]
        raise UserError(f"invalid Beam options {' '.join(extra)}: {reason}") from None
    if unknown:  # a typo of our own flags (--forse) must not run silently as something else
        typed = [w.split("=")[0] for w in extra if w.lstrip("-").split("=")[0] in unknown]
        names = ", ".join(typed or sorted(unknown))
        raise UserError(f"unknown option {names}; see --help (Beam options are passed through)")
    return options


def check_stray_words(extra: list[str]) -> None:
    """Beam silently drops words that are no option's value: the usual one is an unquoted glob
    the shell expanded into many paths, of which --input took the first."""
    for before, word in zip(["-"] + extra, extra, strict=False):
        takes_value = before.startswith("--") and "=" not in before
        if not word.startswith("-") and not takes_value:
            raise UserError(
                f"unexpected argument {word}: --input takes one path; quote a glob "
                "(--input 'videos/*.mp4') so that the shell does not expand it"
            )


def make_runner(settings, options):
    """The pinned local runner, set up as DirectRunner sets up its FnApiRunner (worker processes
    receive the pipeline options); None lets Beam build any other runner from the options."""
    if settings.runner.name != LOCAL_RUNNER:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    environment = None
    if settings.runner.workers > 1:
        from apache_beam.transforms import environments

        # exec: the worker, not a shell around it, is the runner's child (and sees Ctrl-C).
        command = f"exec {shlex.quote(sys.executable)} -m jobs.beam_worker"
        environment = environments.SubprocessSDKEnvironment.from_command_string(command)
    return fn_runner.FnApiRunner(
        default_environment=environment,
        provision_info=fn_runner.ExtendedProvisionInfo(provision),
    )


def summarise(
    input_path: str, output: str, run_id: str, wall_s: float, result, tables: list[str]
) -> dict:
    """The run's figures. Where the output is local they come from the videos rows this run
    committed (exact, with the failed videos' reasons); elsewhere from Beam's counters, which
    any runner reports but some only as attempted (a retried task counts twice)."""
    counters, stages_ms = _metrics(result)
    if not is_remote(output):
        counts = _table_counts(output, run_id)
    else:
        counts = {
            "videos_ok": counters.get("videos_ok", 0),
            "videos_failed": counters.get("videos_failed", 0),
            "visitors": counters.get("visitors", 0),
            "video_seconds": counters.get("video_ms", 0) / 1000,
            "failed": [],
        }
    video_s = counts["video_seconds"]
    return {
        "run_id": run_id,
        "videos_ok": counts["videos_ok"],
        "videos_failed": counts["videos_failed"],
        "videos_unchanged": counters.get("videos_unchanged", 0),
        "videos_outside_dates": counters.get("videos_outside_dates", 0),
        "visitors": counts["visitors"],
        "video_seconds": round(video_s, 1),
        "wall_seconds": round(wall_s, 1),
        "video_seconds_per_second": round(video_s / wall_s, 2) if wall_s else None,
        "input": input_path,
        "output": output,
        "tables": tables,
        "stages_ms": stages_ms,
        "failed": counts["failed"],
    }


def _metrics(result) -> tuple[dict, dict]:
    """Counters by name and stage milliseconds from Beam's metrics, committed where the runner
    reports them, else attempted."""
    counters, stages_ms = {}, {}
    try:
        metrics = result.metrics().query()
    except Exception as e:  # a runner without metrics support must not fail a finished night
        log.warning("the runner reports no metrics (%s): stage times and skip counts are 0", e)
        return counters, stages_ms

    def value(m):
        return m.committed if m.committed is not None else m.attempted

    for c in metrics["counters"]:
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + (value(c) or 0)
    for d in metrics["distributions"]:
        name, total = d.key.metric.name, getattr(value(d), "sum", 0) or 0
        if name.endswith("_ms"):
            stages_ms[name[:-3]] = stages_ms.get(name[:-3], 0) + total
        elif name == "inference_batch_latency_micro_secs":
            stages_ms["infer"] = stages_ms.get("infer", 0) + total // 1000
    return counters, stages_ms


def _table_counts(output: str, run_id: str) -> dict:
    from reports.views import connect, fetch

    con = connect(output)
    ok, failed, visitors, video_s = fetch(
        con,
        "SELECT count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'failed'), "
        "coalesce(sum(visitors), 0), coalesce(sum(duration_s) FILTER (status = 'ok'), 0) "
        "FROM videos WHERE run_id = ?",
        [run_id],
    )[0]
    sql = "SELECT video, error FROM videos WHERE run_id = ? AND status = 'failed' ORDER BY 1"
    return {
        "videos_ok": ok,
        "videos_failed": failed,
        "visitors": int(visitors),
        "video_seconds": float(video_s),
        "failed": [{"video": v, "error": e} for v, e in fetch(con, sql, [run_id])],
    }


def print_summary(summary: dict) -> None:
    s = summary
    print(
        f"\nanalysed {s['videos_ok'] + s['videos_failed']} videos: {s['videos_ok']} ok, "
        f"{s['videos_failed']} failed; {s['videos_unchanged']} unchanged since the last run"
        + (f", {s['videos_outside_dates']} outside the dates" if s["videos_outside_dates"] else "")
    )
    for f in s["failed"]:
        print(f"  failed: {f['video']}: {f['error']}")
    seen = ("videos_ok", "videos_failed", "videos_unchanged", "videos_outside_dates")
    if not any(s[k] for k in seen):  # a dead mount or a wrong glob must not look like a quiet night
        print(f"warning: no videos found under {s['input']}", file=sys.stderr)
    print(
        f"visitors: {s['visitors']}; video {s['video_seconds']:.0f} s in {s['wall_seconds']:.0f} s "
        f"wall ({s['video_seconds_per_second']} video-seconds per second)"
    )
    print(f"tables in {s['output']}/ ({', '.join(s['tables'])})")
    scalars = {k: v for k, v in s.items() if k not in ("failed", "stages_ms", "tables")}
    print(json.dumps(scalars, sort_keys=True))


def analyse(args: argparse.Namespace, extra: list[str]) -> dict:
    """Run the pipeline under the output lock; returns the run summary."""
    import apache_beam as beam

    from jobs.outputlock import OutputLock
    from pipelines import analyze
    from pipelines.faces import create_detector
    from pipelines.predictions import ModelFileError, load_model_spec

    settings = load_settings(args)
    for what, path in (
        ("input", args.input),
        ("output", args.output),
        ("model", settings.model.path),
        ("detector model", settings.detector.model or ""),
    ):
        check_filesystem(path, what)
    input_path = check_input(args.input, settings.input.extensions)
    try:
        spec = load_model_spec(settings.model.path)
    except ModelFileError as e:
        raise UserError(str(e)) from None
    try:
        detector = settings.detector
        detector_version = create_detector(detector.name, **detector.detector_options()).version
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    check_stray_words(extra)
    options = pipeline_options(settings, extra)
    output = prepare_output(args.output)
    run_id = uuid.uuid4().hex[:12]
    run = analyze.RunOptions(
        output=output,
        run_id=run_id,
        model_version=spec.model_version,
        detector_version=detector_version,
        force=args.force,
        reprocess_model_changes=args.reprocess_model_changes,
        dates=tuple(args.date) if args.date else None,
        since=args.since,
        progress=sys.stderr.isatty() and not args.no_progress,
    )
    lock = None if is_remote(output) else OutputLock(output)
    if lock:
        lock.acquire()
    try:
        removed = clear_temporaries(output)
        if removed:
            log.info("removed %d half-written files of an interrupted run", removed)
        manifest = read_manifest(output)
        log.info("run %s: %s -> %s (model %s)", run_id, input_path, output, spec.model_version)
        started = time.perf_counter()
        pipeline = beam.Pipeline(runner=make_runner(settings, options), options=options)
        analyze.build(pipeline, input_path, settings, spec, run, manifest)
        try:
            with _quiet_on_interrupt():
                result = pipeline.run()
                result.wait_until_finish()
        except Exception as e:
            if _interrupted(e):  # Ctrl-C inside a step, re-raised by Beam as a RuntimeError
                raise KeyboardInterrupt from None
            raise
        tables = ["videos", "visitors"] + (["detections"] if settings.output.detections else [])
        return summarise(input_path, output, run_id, time.perf_counter() - started, result, tables)
    finally:
        if lock:
            lock.release()


@contextlib.contextmanager
def _quiet_on_interrupt():
    """Ctrl-C silences logging and thread tracebacks before anything else happens: Beam's
    clean-up as the interrupt unwinds stops the worker processes, and the runner's threads
    talking to them would each log a traceback. jobs.cli.run then prints the one line that
    matters. (Only in the main thread, and not where Ctrl-C is ignored, as under nohup.)"""
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler or threading.current_thread() is not (
        threading.main_thread()
    ):
        yield
        return

    excepthook, disabled = threading.excepthook, logging.root.manager.disable

    def silence_then_interrupt(signum, frame):
        threading.excepthook = lambda _: None
        logging.disable(logging.CRITICAL)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, silence_then_interrupt)
    try:
        yield
    finally:
        # Beam's clean-up has joined its threads by now; a caller that goes on (jobs.nightly
        # reporting, a test) gets its logging back.
        signal.signal(signal.SIGINT, previous)
        threading.excepthook = excepthook
        logging.disable(disabled)


def _interrupted(error: BaseException) -> bool:
    """Whether a pipeline failure is a Ctrl-C: Beam re-raises a KeyboardInterrupt from a step as
    ``RuntimeError('KeyboardInterrupt [while running ...]')`` caused by it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    setup_logging(args.verbose)
    summary = analyse(args, extra)
    with reader_may_leave():
        print_summary(summary)
    return EXIT_SOME_FAILED if summary["videos_failed"] else EXIT_OK


def cli() -> None:
    """The console script ``kiosk-analyze``: user errors as one line and exit code 2."""
    sys.exit(run(main))


if __name__ == "__main__":
    cli()
