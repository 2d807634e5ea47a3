"""Entry point of the local runner's worker processes (``--workers N`` with N > 1).

It is Beam's own SDK worker (``apache_beam.runners.worker.sdk_worker_main``) started with this
project's logging set-up first. Started plainly, each worker process prints Beam's start-up notes
to stderr on every run (logging handler created, no semi-persistent directory, unparseable
arguments, optional cloud libraries missing, memory statistics unavailable); they are not the
user's business. Errors still reach stderr, and the job reports failed inputs itself.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

from jobs.cli import EXIT_INTERRUPTED, setup_logging

# Ctrl-C reaches the workers with the job (one process group). A worker then leaves silently, at
# the latest this long after it; by then the job has seen the Ctrl-C and stopped listening, so
# the worker's going shows no tracebacks. What it had half-written stays uncommitted and is
# cleared by the next run.
LEAVE_AFTER_S = 0.5


def _leave_quietly(interrupted: threading.Event):
    def handler(signum, frame) -> None:
        interrupted.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        timer = threading.Timer(LEAVE_AFTER_S, os._exit, [EXIT_INTERRUPTED])
        timer.daemon = True
        timer.start()

    return handler


def main() -> None:
    interrupted = threading.Event()
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a job started with nohup or &
        signal.signal(signal.SIGINT, _leave_quietly(interrupted))
    setup_logging(verbose=False)
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
    # The harness returns when the job closes its control channel, which an interrupted job does
    # mid-bundle; the interpreter's own exit would then abort with a C++ message about the
    # bundle's native threads. Nothing is left to clean up in a worker, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED if interrupted.is_set() else code)


if __name__ == "__main__":
    main()
