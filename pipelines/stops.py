"""Bend 3 of ``pipelines.runner``: Ctrl-C and SIGTERM are stops, not crashes.

In the job's process they silence logging and thread tracebacks at once, reach the worker
processes, and unwind the run as one exception (``quiet_on_interrupt``, ``interrupted_in``); in
a worker process they make it leave quietly (``leave_quietly_on_stops``). ``jobs.cli`` prints
the one line and the exit code.
"""

from __future__ import annotations

import _thread
import contextlib
import glob
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):  # noqa: N818 (a signal, like KeyboardInterrupt)
    """SIGTERM: ``systemctl stop``, a scheduler's timeout, ``kill PID``. A stop, not a crash: it
    unwinds as Ctrl-C does (Beam treats it as one), and the job says "terminated" (exit 143)."""


def raise_terminated(signum, frame):
    raise Terminated


# After Ctrl-C a worker leaves at the latest this long after it: by then the job has seen the
# interrupt and stopped listening, so the worker's going shows no tracebacks.
WORKER_LEAVE_AFTER_S = 0.5


# A stop Python swallowed is raised again this long after: once the finalizer has returned.
RAISE_AGAIN_AFTER_S = 0.05

# The stops the job handles (not where they are ignored, as Ctrl-C under nohup), and what each
# raises.
STOPS = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}


@contextlib.contextmanager
def quiet_on_interrupt():
    """Ctrl-C or SIGTERM silences logging and thread tracebacks before anything else happens:
    Beam's clean-up as the stop unwinds stops the worker processes, and the runner's threads
    talking to them would each log a traceback (only in the main thread).

    Python ignores an exception raised inside a finalizer (``__del__``: a signal handler runs
    wherever the main thread is, a pyarrow writer's finalizer included), so a stop raised there
    would be lost and the run would go on: such a stop is raised again right after, by
    ``_thread.interrupt_main`` from a timer (again if that lands in a finalizer too).

    Yields the list of the stop signals received: a library can turn the stop raised inside it
    into its own error (DuckDB: "Query interrupted"), which the caller still treats as the stop."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.getsignal(s) for s in STOPS}
    excepthook, disabled = threading.excepthook, logging.root.manager.disable
    unraisable = sys.unraisablehook
    leaving = threading.Event()

    def silence_then_stop(signum, frame):
        if leaving.is_set():  # raised again just as the run ended: the stop is under way
            return
        first = not received
        received.append(signum)
        if first:  # silence the rest of the run once
            threading.excepthook = lambda _: None
            logging.disable(logging.CRITICAL)
            _forward_to_children(signum)
        raise STOPS[signum]

    def raise_swallowed_stop(info) -> None:
        signum = _signal_of(info.exc_value)
        if signum is None:
            unraisable(info)
        elif not leaving.is_set():  # a little later: raised here it would be swallowed again
            again = threading.Timer(RAISE_AGAIN_AFTER_S, _thread.interrupt_main, (signum,))
            again.daemon = True
            again.start()

    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, silence_then_stop)
    sys.unraisablehook = raise_swallowed_stop
    try:
        yield received
    finally:
        leaving.set()
        if received:
            _wait_for_worker_watchers()
        # A caller that goes on (jobs.nightly reporting, a test) gets its logging back.
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = unraisable
        threading.excepthook = excepthook
        logging.disable(disabled)


def stop_error(error: BaseException, received: list[int]) -> KeyboardInterrupt | None:
    """The stop a pipeline failure stands for: a Ctrl-C or SIGTERM in its exception chain, else
    the first stop received while it ran (a library turned it into an error of its own); None
    when no stop came."""
    stop = interrupted_in(error)
    if stop is None and received:
        return STOPS[received[0]]()
    return stop


def _signal_of(error: BaseException | None) -> int | None:
    """The stop signal whose exception ``error`` is, or None."""
    for signum, stop in sorted(STOPS.items(), key=lambda kv: kv[1] is KeyboardInterrupt):
        if isinstance(error, stop):
            return signum
    return None


def _wait_for_worker_watchers() -> None:
    """After a stop, wait for Beam's threads watching the worker processes: a stop can unwind
    past their join, and a worker it ended makes its thread raise, printed after the job's last
    line unless that happens while tracebacks are silenced."""
    deadline = time.monotonic() + WORKER_LEAVE_AFTER_S + 5.0
    for thread in threading.enumerate():
        if thread.name == "run_worker" and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _forward_to_children(signum: int) -> None:
    """Pass a stop on to the worker processes: sent to the job alone (``kill PID``), it would
    otherwise reach them only as a closed connection, which each reports with a traceback."""
    for children in glob.glob(f"/proc/{os.getpid()}/task/*/children"):  # Linux
        try:
            pids = [int(p) for p in Path(children).read_text().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)


def interrupted_in(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM anywhere in a pipeline failure's exception chain, or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _leave_quietly(interrupted: threading.Event):
    def handler(signum, frame) -> None:
        interrupted.set()
        logging.disable(logging.CRITICAL)  # the job prints "interrupted"; the rest is noise
        # Beam's harness prints the failure of a bundle the stop cut short straight to stderr.
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the process leaves within 0.5 s
        for s in STOPS:
            signal.signal(s, signal.SIG_IGN)
        code = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
        timer = threading.Timer(WORKER_LEAVE_AFTER_S, os._exit, [code])
        timer.daemon = True
        timer.start()

    return handler


def leave_quietly_on_stops(interrupted: threading.Event) -> None:
    """In a worker process: Ctrl-C and SIGTERM (which reach the workers with the job when sent
    to its process group) make it leave quietly, unless they are ignored."""
    for s in STOPS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _leave_quietly(interrupted))
