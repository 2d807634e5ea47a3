"""Where this project bends Apache Beam's runners, each bend with its reason.

Checked against Apache Beam 2.77.0 (setup.py pins it); each bend names what it works around, so
it can be dropped when Beam changes.

1. **The local runner is pinned** (``pipeline_options``, ``make_runner``). Since Beam 2.68 a
   plain ``DirectRunner`` may hand the job to Prism, a Go binary it downloads at run time, which
   fails offline. The job runs Beam's in-process FnApiRunner instead
   (``--direct_running_mode=in_memory``), built here as DirectRunner builds it, so that worker
   processes receive the pipeline options.
2. **Worker processes are ours** (``make_runner``, ``worker_main``). With ``--workers N > 1``
   the FnApiRunner starts N SDK-harness processes. Beam's own "multi_processing" mode starts
   them with a command that prints Beam's start-up notes on every run and leaves them to die
   noisily; this module starts ``python -m pipelines.runner``, which sets up logging first,
   is ``exec``-ed (so the worker, not a shell, is the runner's child and receives Ctrl-C) and
   leaves through ``os._exit`` (an interpreter exit mid-bundle aborts with a C++ message about
   the bundle's native threads).
3. **Ctrl-C is one line** (``run_pipeline``). Beam re-raises a KeyboardInterrupt from a step
   as ``RuntimeError('KeyboardInterrupt ...')`` (exit 1 and a long traceback), and as the
   interrupt unwinds, the runner's threads talking to the stopping workers each log a
   traceback. The job silences logging and thread tracebacks the moment Ctrl-C arrives and
   turns the wrapped error back into a KeyboardInterrupt, which ``jobs.cli`` prints as
   ``interrupted`` (exit 130); the handling lives in ``pipelines.stops``.
4. **Beam's notes are filtered** (``install_log_filter``). Beam logs at import time and in every
   worker about optional cloud libraries it does not need here, memory statistics RunInference
   cannot read on this platform, and the "multi_processing" mode that bend 2 replaces on
   purpose. The filter is installed before Beam is first imported, which is why this module
   imports Beam inside its functions, not at the top.
5. **Options are checked before the run** (``pipeline_options``). Beam parses options lazily
   and exits through argparse (``SystemExit``) on a bad value, and it silently ignores unknown
   flags; the job turns both into one line and exit 2 before any video is read. Dask's options
   are Beam options only once Beam's Dask module is imported, so it is imported first.
6. **Runner names as Beam takes them, downloads refused** (``resolve_name``,
   ``_check_no_download``). Beam takes a runner in any case, with or without "Runner", or by
   its dotted path; DaskRunner only by its path, so the name is added here. Runners that would
   fetch something at run time and crash offline with a traceback (Prism; Flink, Spark and
   Kafka Streams without a job endpoint or a local job-server jar; PortableRunner without a
   job endpoint) are refused before any work, saying what to pass.
7. **Dask is Beam's DaskRunner with four parts replaced** (``make_runner``,
   ``pipelines.dask_runner``): its 2.77 translation loses what a step emits in
   ``finish_bundle``, computes side inputs inside every task, drops Reshuffle (one worker does
   all) and reports no metrics; that module says how each is replaced.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import shlex
import sys
import threading
import traceback

from pipelines.stops import (
    EXIT_INTERRUPTED,
    leave_quietly_on_stops,
    quiet_on_interrupt,
    stop_error,
)

LOCAL_RUNNER = "DirectRunner"
DASK_RUNNER = "DaskRunner"
DASK_PATH = "apache_beam.runners.dask.dask_runner.DaskRunner"
KNOWN_RUNNERS = (LOCAL_RUNNER, DASK_RUNNER, "PortableRunner", "FlinkRunner", "SparkRunner",
                 "DataflowRunner")  # fmt: skip
WORKER_RUNNERS = (LOCAL_RUNNER, DASK_RUNNER)  # --workers: local worker processes
# Beam's runners that run the job through its SwitchingDirectRunner, which may pick Prism.
PRISM_RUNNERS = ("PrismRunner", "InteractiveRunner", "TestDirectRunner")
# Portable runners that start a job server from a jar (downloaded unless given): its option.
JOB_SERVER_JARS = {
    "FlinkRunner": "flink_job_server_jar",
    "SparkRunner": "spark_job_server_jar",
    "KafkaStreamsRunner": "kafka_streams_job_server_jar",
    "PortableRunner": None,
}
EXIT_USAGE = 2  # the job's exit codes (jobs.cli takes them from here)


_verbose = False  # install_log_filter's last setting


class RunnerError(ValueError):
    """A runner or Beam option the job cannot use; the message says what to fix."""


class _DropNoise(logging.Filter):
    NOISE = (
        "apitools not found",
        "Resource module is not available",
        "direct_running_mode should be",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("KeyboardInterrupt") or (
            record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt)
        ):
            return False  # Ctrl-C as Beam logs it, traceback and all: the job says "interrupted"
        if not _verbose and record.name.startswith("apache_beam") and record.exc_info:
            return False  # a step's exception, traceback and all: the job says "crashed" (-v shows)
        return not any(noise in message for noise in self.NOISE)


def install_log_filter(verbose: bool | None = None) -> None:
    """Bend 4, on the root logger and its handlers (idempotent; ``verbose`` None: as last set);
    without ``verbose`` Beam's own warnings are hidden too (failed inputs are reported by the
    job itself), and Dask's notes (its import sets them to show)."""
    global _verbose
    verbose = _verbose = _verbose if verbose is None else verbose
    root = logging.getLogger()
    for filterer in (root, *root.handlers):
        if not any(isinstance(f, _DropNoise) for f in filterer.filters):
            filterer.addFilter(_DropNoise())
    if not verbose:
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
        for noisy in ("absl", "grpc", "matplotlib", "PIL", "distributed", "tornado"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def resolve_name(name: str) -> str:
    """Bend 6: the runner's name as Beam resolves ``name``; another dotted path (a runner
    class of the user's) is kept as it is. RunnerError for a name Beam does not know."""
    from apache_beam.options.pipeline_options import StandardOptions

    paths = (*StandardOptions.ALL_KNOWN_RUNNERS, DASK_PATH)
    if "." in name:
        return name.rsplit(".", 1)[-1] if name in paths else name
    names = {p.rsplit(".", 1)[-1].lower(): p.rsplit(".", 1)[-1] for p in paths}
    found = names.get(name.lower()) or names.get(name.lower() + "runner")
    if found is None:
        raise RunnerError(f"unknown runner {name!r}; use one of {', '.join(KNOWN_RUNNERS)}")
    return LOCAL_RUNNER if found == "SwitchingDirectRunner" else found  # Beam's DirectRunner


def pipeline_options(name: str, workers: int, extra: list[str]):
    """Bends 1, 5 and 6: Beam's options for runner ``name`` with the user's Beam flags
    ``extra``; RunnerError for a runner that downloads, an unknown runner, a bad or unknown
    flag."""
    from apache_beam.options.pipeline_options import PipelineOptions

    name = resolve_name(name)
    if name in PRISM_RUNNERS:
        raise RunnerError(
            f"runner {name} downloads its binary at run time (Beam's Prism); use "
            f"{LOCAL_RUNNER} (in-process) or {DASK_RUNNER}"
        )
    flags = list(extra)
    if name == LOCAL_RUNNER:
        flags += ["--direct_running_mode=in_memory", f"--direct_num_workers={workers}"]
        if not any(f.startswith("--default_sdk_harness_log_level") for f in extra):
            flags += ["--default_sdk_harness_log_level=WARNING"]  # worker processes: quiet
    elif name == DASK_RUNNER:
        if importlib.util.find_spec("distributed") is None:
            raise RunnerError("DaskRunner needs the dask extra: pip install -e '.[dask]'")
        from apache_beam.runners.dask import dask_runner  # noqa: F401  (--dask_* options)

        install_log_filter()
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
        raise RunnerError(f"invalid Beam options {' '.join(extra)}: {reason}") from None
    if unknown:  # a typo of the job's own flags (--forse) must not run silently as something else
        typed = [w.split("=")[0] for w in extra if w.lstrip("-").split("=")[0] in unknown]
        names = ", ".join(typed or sorted(unknown))
        raise RunnerError(f"unknown option {names}; see --help (Beam options are passed through)")
    _check_no_download(name, known)
    return options


def _check_no_download(name: str, options: dict) -> None:
    """Bend 6: a portable runner needs a running job server, or a job-server jar on disk."""
    if name not in JOB_SERVER_JARS or options.get("job_endpoint"):
        return
    jar_option = JOB_SERVER_JARS[name]
    jar = options.get(jar_option) if jar_option else None
    if jar and os.path.isfile(jar):
        return
    given = f"; --{jar_option} {jar} is no file here" if jar else ""
    jar_flag = f", or --{jar_option} FILE (Beam's job-server jar)" if jar_option else ""
    raise RunnerError(
        f"runner {name} needs a job server{given}: pass --job_endpoint HOST:PORT of a running "
        f"one{jar_flag}; without them Beam downloads one at run time"
        + ("" if jar_option else " (--job_endpoint embed runs Beam's in-process one)")
    )


def shows_progress_here(name: str, options) -> bool:
    """Whether the workers write to this terminal: not a Dask cluster's, which has its own."""
    if name != DASK_RUNNER:
        return True
    config = options.get_all_options()
    return not (config.get("address") or config.get("scheduler_file"))


def make_runner(name: str, workers: int, options):
    """Bends 1, 2 and 7: the pinned local runner with our worker command, or Dask's; None lets
    Beam build any other runner from the options."""
    name = resolve_name(name)
    if name == DASK_RUNNER:
        from pipelines import dask_runner

        return dask_runner.make_runner(workers, _verbose, _dask_worker_setup)
    if name != LOCAL_RUNNER:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle
    from apache_beam.transforms import environments

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    environment = None
    if workers > 1:
        command = f"exec {shlex.quote(sys.executable)} -m pipelines.runner"
        environment = environments.SubprocessSDKEnvironment.from_command_string(command)
    return fn_runner.FnApiRunner(
        default_environment=environment,
        provision_info=fn_runner.ExtendedProvisionInfo(provision),
    )


def run_pipeline(pipeline):
    """Bend 3: run ``pipeline`` to the end and return its result; Ctrl-C raises
    KeyboardInterrupt and SIGTERM ``Terminated``, however Beam wrapped them."""
    try:
        with quiet_on_interrupt() as received:
            result = pipeline.run()
            result.wait_until_finish()
    except Exception as e:
        stop = stop_error(e, received)
        if stop is not None:
            raise type(stop) from None
        raise
    return result


def _dask_worker_setup(verbose: bool) -> None:
    """Bends 2 and 4 in a local Dask cluster's worker process: the job's logging, and Ctrl-C
    (which reaches the workers too) leaving quietly."""
    install_log_filter(verbose)
    leave_quietly_on_stops(threading.Event())


def worker_main() -> None:
    """Bend 2: one SDK-harness worker process, Beam's ``sdk_worker_main`` with this project's
    logging set up first. What an interrupted worker half-wrote stays uncommitted and is
    cleared by the next run."""
    if "CONTROL_API_SERVICE_DESCRIPTOR" not in os.environ:  # run by hand, not by the job
        asked = any(a in ("-h", "--help") for a in sys.argv[1:])
        print(
            ("" if asked else "error: ")
            + "python -m pipelines.runner is the worker process jobs.analyze starts for "
            "--workers N; run the job instead: python -m jobs.analyze --help",
            file=sys.stdout if asked else sys.stderr,
        )
        sys.exit(0 if asked else EXIT_USAGE)
    interrupted = threading.Event()
    leave_quietly_on_stops(interrupted)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    install_log_filter(verbose=False)
    from apache_beam.runners.worker import sdk_worker_main

    code = 1
    try:
        sdk_worker_main.main(sys.argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        if not interrupted.is_set():
            traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED if interrupted.is_set() else code)  # the timer may name 143 first


if __name__ == "__main__":
    worker_main()
