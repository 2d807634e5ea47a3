"""What every entry point shares: exit codes, one-line user errors, quiet logging.

Exit codes (documented in the README):
  0  everything asked for was done
  1  the job ran but some inputs failed (the rest were written)
  2  usage or configuration error: nothing was done; the message says what to fix
  130  interrupted (Ctrl-C): what was committed stays
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from pipelines.runner import install_log_filter

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention


class UserError(Exception):
    """A mistake a user can fix (bad path, bad option, wrong model file): nothing was done."""

    exit_code = EXIT_USAGE


class JobFailed(UserError):
    """The job ran into something in the data it could not get past (a report whose SQL fails
    on these tables, say); what was done before it stands."""

    exit_code = EXIT_SOME_FAILED


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
    calls it and then jobs.analyze calls it again."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
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
    for JobFailed), and Ctrl-C into 130. The one place every job's errors are printed."""
    try:
        return main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


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
