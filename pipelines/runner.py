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
   ``interrupted`` (exit 130).
4. **Beam's notes are filtered** (``install_log_filter``). Beam logs at import time and in every
   worker about optional cloud libraries it does not need here, memory statistics RunInference
   cannot read on this platform, and the "multi_processing" mode that bend 2 replaces on
   purpose. The filter is installed before Beam is first imported, which is why this module
   imports Beam inside its functions, not at the top.
5. **Options are checked before the run** (``pipeline_options``). Beam parses options lazily
   and exits through argparse (``SystemExit``) on a bad value, and it silently ignores unknown
   flags; the job turns both into one line and exit 2 before any video is read.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
import signal
import sys
import threading
import traceback

LOCAL_RUNNER = "DirectRunner"
# Runners that would fetch a binary at run time.
DOWNLOADING_RUNNERS = {"prismrunner", "prism"}
KNOWN_RUNNERS = ("DirectRunner", "PortableRunner", "FlinkRunner", "SparkRunner", "DataflowRunner")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as jobs.cli
# After Ctrl-C a worker leaves at the latest this long after it: by then the job has seen the
# interrupt and stopped listening, so the worker's going shows no tracebacks.
WORKER_LEAVE_AFTER_S = 0.5


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
        return not any(noise in message for noise in self.NOISE)


def install_log_filter(verbose: bool) -> None:
    """Bend 4, on the root logger and its handlers (idempotent); without ``verbose`` Beam's own
    warnings are hidden too (failed inputs are reported by the job itself)."""
    root = logging.getLogger()
    for filterer in (root, *root.handlers):
        if not any(isinstance(f, _DropNoise) for f in filterer.filters):
            filterer.addFilter(_DropNoise())
    if not verbose:
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
        for noisy in ("absl", "grpc", "matplotlib", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def pipeline_options(name: str, workers: int, extra: list[str]):
    """Bends 1 and 5: Beam's options for runner ``name`` with the user's Beam flags ``extra``;
    RunnerError for a runner that downloads, an unknown runner, a bad or unknown flag."""
    from apache_beam.options.pipeline_options import PipelineOptions

    if name.lower() in DOWNLOADING_RUNNERS:
        raise RunnerError(f"runner {name} downloads its binary at run time; use {LOCAL_RUNNER}")
    if name not in KNOWN_RUNNERS and "." not in name:
        raise RunnerError(f"unknown runner {name!r}; use one of {', '.join(KNOWN_RUNNERS)}")
    flags = list(extra)
    if name == LOCAL_RUNNER:
        flags += ["--direct_running_mode=in_memory", f"--direct_num_workers={workers}"]
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
        raise RunnerError(f"invalid Beam options {' '.join(extra)}: {reason}") from None
    if unknown:  # a typo of the job's own flags (--forse) must not run silently as something else
        typed = [w.split("=")[0] for w in extra if w.lstrip("-").split("=")[0] in unknown]
        names = ", ".join(typed or sorted(unknown))
        raise RunnerError(f"unknown option {names}; see --help (Beam options are passed through)")
    return options


def make_runner(name: str, workers: int, options):
    """Bends 1 and 2: the pinned local runner with our worker command; None lets Beam build any
    other runner from the options."""
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
    KeyboardInterrupt, however Beam wrapped it."""
    try:
        with _quiet_on_interrupt():
            result = pipeline.run()
            result.wait_until_finish()
    except Exception as e:
        if _interrupted(e):
            raise KeyboardInterrupt from None
        raise
    return result


@contextlib.contextmanager
def _quiet_on_interrupt():
    """Ctrl-C silences logging and thread tracebacks before anything else happens (only in the
    main thread, and not where Ctrl-C is ignored, as under nohup)."""
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
    """Whether a pipeline failure is a Ctrl-C anywhere in its exception chain."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _leave_quietly(interrupted: threading.Event):
    def handler(signum, frame) -> None:
        interrupted.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        timer = threading.Timer(WORKER_LEAVE_AFTER_S, os._exit, [EXIT_INTERRUPTED])
        timer.daemon = True
        timer.start()

    return handler


def worker_main() -> None:
    """Bend 2: one SDK-harness worker process, Beam's ``sdk_worker_main`` with this project's
    logging set up first. What an interrupted worker half-wrote stays uncommitted and is
    cleared by the next run."""
    interrupted = threading.Event()
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a job started with nohup or &
        signal.signal(signal.SIGINT, _leave_quietly(interrupted))
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
    os._exit(EXIT_INTERRUPTED if interrupted.is_set() else code)


if __name__ == "__main__":
    worker_main()
