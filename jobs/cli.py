"""What every entry point shares: exit codes, one-line user errors, quiet logging.

Exit codes (documented in the README):
  0  everything asked for was done
  1  the job ran but some inputs failed (the rest were written)
  2  usage or configuration error: nothing was done; the message says what to fix
  130  interrupted (Ctrl-C): what was committed stays
  143  terminated (SIGTERM: systemctl stop, a scheduler's timeout, kill PID): likewise
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

from pipelines.runner import EXIT_USAGE, install_log_filter
from pipelines.stops import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, raise_terminated

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_CRASHED = 3  # the pipeline itself failed (a bug or a dead worker), not an input


class UserError(Exception):
    """A mistake a user can fix (bad path, bad option, wrong model file): nothing was done."""

    exit_code = EXIT_USAGE


class JobFailed(UserError):
    """The job ran into something in the data it could not get past (a report whose SQL fails
    on these tables, say); what was done before it stands."""

    exit_code = EXIT_SOME_FAILED


class PipelineCrashed(UserError):
    """The pipeline itself stopped with an error no input explains. The videos it committed
    stay (each is published whole) and the next run does the rest; ``summary`` is the run's
    summary up to the crash, for the job to print before its one line."""

    exit_code = EXIT_CRASHED

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, like every other user error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def one_line_warnings() -> None:
    """Python warnings (a skipped malformed file, say) as one ``warning: ...`` line each, not the
    default two lines with a source excerpt."""
    warnings.showwarning = _one_line_warning


def _one_line_warning(message, category, *args, **kwargs) -> None:
    print(f"warning: {message}", file=sys.stderr)


def setup_logging(verbose: bool = False) -> None:
    """Log lines with their date and time (a nightly log holds many nights, and a catch-up run
    crosses midnight); Beam's noise filtered (``pipelines.runner``). Idempotent: jobs.nightly
    calls it and then jobs.analyze calls it again.

    Beam logs a note through ``logging.warning`` when it is imported, which gives the root logger
    a plain stderr handler before any job runs (so ``basicConfig`` alone would do nothing): that
    handler gets the job's format instead."""
    level = logging.DEBUG if verbose else logging.INFO
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level)
    for handler in root.handlers:
        if type(handler) is logging.StreamHandler:  # not a test's capturing subclass
            handler.setFormatter(formatter)
    root.setLevel(level)
    install_log_filter(verbose)


def check_writable(path: str, folder: bool = False) -> None:
    """Fail now, not after the work, when an output file (``folder``: an output folder) cannot
    be written; creates the folder it goes in."""
    target = Path(path) if folder else Path(path).parent
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    if not os.access(target, os.W_OK):
        raise UserError(f"cannot write {path}: permission denied")


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call ``main`` turning user errors into one line on stderr and their exit code (2, or 1
    for JobFailed), Ctrl-C into 130 and SIGTERM into 143: a stop unwinds (the output lock is
    released, what was committed stays). The one place every job's errors are printed."""
    previous = _stop_on_sigterm()
    try:
        return main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm():
    """SIGTERM raises ``Terminated`` in the main thread (by default it kills the process without
    a word or a clean-up); returns the handler it replaced, None where it left it alone."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        return None
    signal.signal(signal.SIGTERM, raise_terminated)
    return previous


@contextlib.contextmanager
def reader_may_leave():
    """Around a job's printing of its results: a reader that has gone (``... | head``) is not an
    error. The rest of the output is dropped and the job keeps its own exit code (1 when inputs
    failed), which a broken pipe caught anywhere else would hide."""
    try:
        yield
        sys.stdout.flush()  # a pipe is block-buffered: the write that fails may be this one
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
