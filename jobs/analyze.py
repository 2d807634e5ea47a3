"""python -m jobs.analyze --input videos/ : the nightly analysis job.

Reads every video under --input, writes the tables under --output (default output/), prints a
summary and a one-line JSON summary, and exits 0 (all inputs ok), 1 (some inputs failed, the rest
written) or 2 (usage or configuration error, nothing done). Options the job does not know are
handed to Apache Beam, so e.g. ``--runner DataflowRunner --project P --region R
--temp_location gs://...`` run the same pipeline on Dataflow.

This module parses and checks; the pipeline is ``pipelines.pipeline``, the runner's set-up
``pipelines.runner``, the output's storage rules ``schemas``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from common.config import ConfigError
from common.paths import is_remote
from jobs.cli import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    ArgumentParser,
    PipelineCrashed,
    UserError,
    reader_may_leave,
    run,
    setup_logging,
)
from jobs.summary import print_summary
from pipelines import accounting, pipeline, runner
from pipelines.embeddings import FaceEmbedder
from pipelines.faces import detector_version
from pipelines.inputs import GLOB_CHARS, has_video_extension
from pipelines.predictions import ModelFileError, load_model_spec
from pipelines.settings import RunOptions, Settings, load_settings
from schemas.lock import OutputBusy, OutputLock
from schemas.manifest import read_manifest
from schemas.publish import clear_temporaries
from schemas.views import TablesError

log = logging.getLogger("jobs.analyze")
REPO = Path(__file__).resolve().parents[1]


def build_parser(defaults: Settings) -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m jobs.analyze",
        description="Find faces in recorded kiosk videos, follow each visitor, estimate age and "
        "gender once per visitor, and write Parquet tables (videos, visitors, detections).",
        epilog="Exit codes: 0 all inputs ok; 1 some inputs failed (the others are written); "
        "2 usage or configuration error; 3 the pipeline itself crashed; 130 interrupted; 143 "
        "stopped by SIGTERM (after 3, 130 and 143 what was committed stays). Unknown options "
        "are passed to Beam.",
    )
    p.add_argument(
        "--input",
        required=True,
        help="video file, folder (searched recursively) or glob; local or any Beam filesystem "
        "(gs://, s3://, hdfs://)",
    )
    p.add_argument("--output", default="output", help="folder for the tables (default: output/)")
    p.add_argument("--config", help="site YAML merged over config/analyze.yaml")
    p.add_argument("--model", help="face model ONNX file (default: the shipped model)")
    p.add_argument(
        "--fps",
        type=float,
        help=f"frames analysed per second of video (default {defaults.decode.fps:g})",
    )
    p.add_argument(
        "--runner",
        help=f"Beam runner (default {defaults.runner.name}): {', '.join(runner.KNOWN_RUNNERS)}, "
        "any name Beam takes, or a runner class's dotted path",
    )
    p.add_argument(
        "--workers",
        type=int,
        help=f"worker processes of the DirectRunner or of DaskRunner's local cluster "
        f"(default {defaults.runner.workers}: "
        f"{defaults.runner.worker_count()} here; see runner.workers in config/analyze.yaml)",
    )
    p.add_argument(
        "--detections",
        action="store_true",
        help="also write the per-frame detections table (off by default)",
    )
    _add_selection(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _add_selection(p: ArgumentParser) -> None:
    """The options that choose which of the matched videos this run analyses."""
    p.add_argument(
        "--date",
        action="append",
        type=_day,
        metavar="YYYY-MM-DD",
        help="only videos that start on this date (repeatable)",
    )
    p.add_argument(
        "--since", type=_day, metavar="YYYY-MM-DD", help="only videos that start on or after this"
    )
    p.add_argument(
        "--force", action="store_true", help="reanalyse every matched video, even unchanged ones"
    )
    p.add_argument(
        "--reprocess-model-changes",
        action="store_true",
        help="reanalyse videos last analysed with a different model version",
    )


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The job's options and the words left for Beam. The defaults shown in --help are read
    from config/analyze.yaml, where they live."""
    return build_parser(load_settings()).parse_known_args(argv)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


# Remote filesystems: the Beam extra (installed through ours, setup.py) and the module it brings.
# Beam registers some of them without it and fails only on first use (s3 needs boto3 then).
_FILESYSTEM_EXTRAS = {
    "gs": ("gcp", "google.cloud.storage"),
    "s3": ("aws", "boto3"),
    "hdfs": ("hadoop", "hdfs"),
}


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
                f"{what} {path}: {scheme}:// needs Beam's {extra} extra; install "
                f"it with pip install -e '.[{extra}]'"
            )
        return
    try:
        FileSystems.get_filesystem(path)
    except Exception:  # Beam raises ValueError or BeamIOError for an unknown scheme
        known = ", ".join(f"{s}://" for s in _FILESYSTEM_EXTRAS)
        raise UserError(
            f"{what} {path}: Beam has no filesystem for {scheme}:// ({known} do)"
        ) from None


def settings_for(args: argparse.Namespace) -> Settings:
    """The defaults, the site file and the flags, in that order; model paths made absolute so
    worker processes started elsewhere read the same files."""
    try:
        settings = _command_line_overrides(load_settings(args.config), args)
    except ConfigError as e:
        raise UserError(str(e)) from None
    settings = settings.replace("model", path=_resolve_model(settings.model.path))
    if settings.identity.embeds:
        path = _resolve_model(settings.identity.model, "identity.model")
        settings = settings.replace("identity", model=path)
    model = settings.detector.model
    if model is not None and not is_remote(model):
        settings = settings.replace("detector", model=str(Path(model).resolve()))
    return settings


def _command_line_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    """The flags laid over the settings (each section checks its values again)."""
    if args.fps is not None:
        if not math.isfinite(args.fps) or args.fps <= 0:
            raise UserError("--fps must be a positive number")
        settings = settings.replace("decode", fps=args.fps)
    if args.model:
        settings = settings.replace("model", path=args.model)
    if args.runner:
        settings = settings.replace("runner", name=args.runner)
    try:  # "direct", "dask", a dotted path: the name the job and Beam go by
        settings = settings.replace("runner", name=runner.resolve_name(settings.runner.name))
    except runner.RunnerError as e:
        raise UserError(str(e)) from None
    if args.workers is not None:
        if args.workers < 1:
            raise UserError("--workers must be at least 1")
        settings = settings.replace("runner", workers=args.workers)
    workers = settings.runner.worker_count()  # "auto" becomes this machine's number, once
    if workers != settings.runner.workers and settings.runner.name in runner.WORKER_RUNNERS:
        log.info("%d %s worker(s) (runner.workers: auto)", workers, settings.runner.name)
    settings = settings.replace("runner", workers=workers)
    if settings.identity.enabled and (settings.runner.name != runner.LOCAL_RUNNER or workers != 1):
        # Only the in-process runner keeps one process (and its Shared registry) for the run.
        raise UserError(
            "identity.enabled matches people in one process's memory: run it on the "
            "DirectRunner with --workers 1"
        )
    if args.detections:
        settings = settings.replace("output", detections=True)
    return settings


def _resolve_model(path: str, setting: str = "--model FILE") -> str:
    if is_remote(path):
        return path
    candidate = Path(path)
    if not candidate.is_absolute() and not candidate.exists() and (REPO / path).exists():
        candidate = REPO / path
    if not candidate.exists():
        raise UserError(f"model file not found: {path} (give {setting})")
    return str(candidate.resolve())


def check_input(path: str, extensions: tuple[str, ...]) -> str:
    """The input as the tables will name it: absolute, so one file reached by a relative glob
    and by its folder is the same row."""
    if is_remote(path):
        return path
    if not GLOB_CHARS & set(path) and not Path(path).exists():
        raise UserError(f"input not found: {path}")
    if Path(path).is_file() and not has_video_extension(path, extensions):
        raise UserError(
            f"{path} does not have a video extension ({', '.join(extensions)}); "
            "add its extension to input.extensions in a --config file"
        )
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


def model_versions(settings: Settings):
    """The face model's spec and the detector's version, read from their files' metadata
    (nothing is built); a missing or wrong file is a user error."""
    try:
        spec = load_model_spec(settings.model.path)
        if settings.identity.embeds:  # fail now, not in every worker's setup
            FaceEmbedder(settings.identity.model)
        return spec, detector_version(**settings.detector.version_args())
    except (ModelFileError, ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None


def beam_options(settings: Settings, extra: list[str]):
    check_stray_words(extra)
    try:
        return runner.pipeline_options(settings.runner.name, settings.runner.workers, extra)
    except runner.RunnerError as e:
        raise UserError(str(e)) from None


def analyse(args: argparse.Namespace, extra: list[str]) -> dict:
    """Check everything, then run the pipeline under the output lock; returns the summary."""
    settings = settings_for(args)
    paths = {"input": args.input, "output": args.output, "model": settings.model.path}
    paths["detector model"] = settings.detector.model or ""
    paths["identity model"] = settings.identity.model if settings.identity.embeds else ""
    for what, path in paths.items():
        check_filesystem(path, what)
    input_path = check_input(args.input, settings.input.extensions)
    spec, detector = model_versions(settings)
    options = beam_options(settings, extra)
    output = prepare_output(args.output)
    run_opts = RunOptions(
        output=output,
        run_id=uuid.uuid4().hex[:12],
        model_version=spec.model_version,
        detector_version=detector,
        force=args.force,
        reprocess_model_changes=args.reprocess_model_changes,
        dates=tuple(args.date) if args.date else None,
        since=args.since,
        progress=sys.stderr.isatty()
        and not args.no_progress
        and runner.shows_progress_here(settings.runner.name, options),
    )
    lock = None if is_remote(output) else OutputLock(output)
    try:
        if lock:
            lock.acquire()
        manifest = _prepare_output_tables(output)
        log.info(
            "run %s: %s -> %s (model %s)", run_opts.run_id, input_path, output, spec.model_version
        )
        started = time.perf_counter()
        local = runner.make_runner(settings.runner.name, settings.runner.workers, options)
        p = beam.Pipeline(runner=local, options=options)
        pipeline.build(p, input_path, settings, spec, run_opts, manifest)
        tables = ["videos", "visitors"] + (["detections"] if settings.output.detections else [])
        try:
            result = runner.run_pipeline(p)
        except Exception as e:
            wall_s = time.perf_counter() - started
            raise _crashed(e, input_path, output, run_opts.run_id, wall_s, tables) from None
        wall_s = time.perf_counter() - started
        return accounting.summarise(input_path, output, run_opts.run_id, wall_s, result, tables)
    except (OutputBusy, TablesError) as e:
        raise UserError(_storage_problem(e, output)) from None
    finally:
        if lock:
            # A stop can land while a worker writes a file: its half stays behind until cleared,
            # and only the lock's holder may clear it.
            clear_temporaries(output)
            lock.release()


def _crashed(error: Exception, input_path, output, run_id, wall_s, tables) -> PipelineCrashed:
    """The pipeline's own failure as one line (the traceback goes to the debug log, -v) with
    the summary of what the run committed before it."""
    log.debug("the pipeline crashed", exc_info=error)
    summary = accounting.summarise(input_path, output, run_id, wall_s, None, tables)
    summary["crashed"] = True
    lines = str(error).strip().splitlines() or [""]
    detail = f"{type(error).__name__}: {lines[-1] if len(lines) > 1 else lines[0]}"[:300]
    return PipelineCrashed(
        f"the pipeline crashed ({detail}); the {summary['videos_ok'] + summary['videos_failed']} "
        "videos it committed stay and the next run does the rest (-v logs the traceback)",
        summary,
    )


def _prepare_output_tables(output: str) -> dict:
    """Clear what a killed run half-wrote; the manifest of what the output already holds."""
    removed = clear_temporaries(output)
    if removed:
        log.info("removed %d half-written files of an interrupted run", removed)
    return read_manifest(output)


def _storage_problem(error: Exception, output: str) -> str:
    if isinstance(error, TablesError):
        return f"cannot read the tables already in {output} (move that file away): {error}"
    return str(error)


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    setup_logging(args.verbose)
    try:
        summary = analyse(args, extra)
    except PipelineCrashed as crash:
        with reader_may_leave():
            print_summary(crash.summary)
        raise
    with reader_may_leave():
        print_summary(summary)
    return EXIT_SOME_FAILED if summary["videos_failed"] else EXIT_OK


def cli() -> None:
    """The console script ``kiosk-analyze``: user errors as one line and exit code 2."""
    sys.exit(run(main))


if __name__ == "__main__":
    cli()
