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

from jobs.cli import EXIT_INTERRUPTED, setup_logging

# Ctrl-C reaches the workers with the job (one process group). A worker leaves this long after
# it, silently: by then the job has seen the Ctrl-C too and stopped listening, so the workers'
# going does not show as tracebacks. What a worker had half-written stays uncommitted and is
# cleared by the next run.
LEAVE_AFTER_S = 0.5


def _leave_quietly(signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    timer = threading.Timer(LEAVE_AFTER_S, os._exit, [EXIT_INTERRUPTED])
    timer.daemon = True
    timer.start()


def main() -> None:
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a job started with nohup or &
        signal.signal(signal.SIGINT, _leave_quietly)
    setup_logging(verbose=False)
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
