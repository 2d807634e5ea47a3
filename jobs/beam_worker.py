"""Entry point of the local runner's worker processes (``--workers N`` with N > 1).

It is Beam's own SDK worker (``apache_beam.runners.worker.sdk_worker_main``) started with this
project's logging set-up first. Started plainly, each worker process prints Beam's start-up notes
to stderr on every run (logging handler created, no semi-persistent directory, unparseable
arguments, optional cloud libraries missing, memory statistics unavailable); they are not the
user's business. Errors still reach stderr, and the job reports failed inputs itself.
"""

from __future__ import annotations

import sys

from jobs.cli import setup_logging


def main() -> None:
    setup_logging(verbose=False)
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
