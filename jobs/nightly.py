"""python -m jobs.nightly --input videos/ --output output/ : the nightly routine.

Analyses, incrementally, the videos that start on every day since the last completed nightly run
up to yesterday (by the pipeline's start-time rule), then prints those days' reports. The last
completed day lives in OUTPUT/.nightly.json and advances only once the analysis has run (exit 0
or 1), so a night the machine was off, or whose run stopped on an error, is analysed by the next
run. The first run (no state file) analyses yesterday; a gap of more than MAX_CATCH_UP_DAYS is cut
to its latest days, with a warning that says how to analyse the rest. ``--date DAY`` analyses
that day alone and leaves the state as it is.

Exit status is the analysis's: 0 all ok, 1 some inputs failed (the rest are written and
reported), 2 usage or configuration error, 3 the pipeline crashed, 130 interrupted, 143 stopped
by SIGTERM (after 3, 130 and 143 what was committed stays).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from common.paths import is_remote
from jobs import analyze, report
from jobs.cli import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    ArgumentParser,
    UserError,
    check_writable,
    run,
    setup_logging,
)
from reports.formats import FORMATS

log = logging.getLogger("jobs.nightly")
STATE_NAME = ".nightly.json"
# One run should end before the next night's (the systemd unit stops it after 20 h): at 4.6
# video-seconds per second (make bench, 2 cores) 20 h analyse some 330 h of video, a month of one
# camera recording 10 h a day. A run stopped anyway keeps what it committed, and the next one,
# given the same days again, does only the rest.
MAX_CATCH_UP_DAYS = 31


def parse_args(argv):
    p = ArgumentParser(
        prog="python -m jobs.nightly",
        description="Analyse the days since the last nightly run (at first: yesterday) into "
        "--output and print their reports.",
        epilog="Options after -- are passed to jobs.analyze (e.g. -- --workers 2 --detections). "
        "Exit codes as jobs.analyze's (see its --help).",
    )
    p.add_argument("--input", required=True, help="folder of recordings (searched recursively)")
    p.add_argument("--output", default="output", help="tables folder (default: output/)")
    p.add_argument(
        "--date",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help=f"analyse this day only, leaving OUTPUT/{STATE_NAME} as it is (default: every day "
        f"since the last run, at most {MAX_CATCH_UP_DAYS})",
    )
    p.add_argument(
        "--format",
        default="table",
        choices=FORMATS,
        help="report format (default: table)",
    )
    p.add_argument("--report-out", metavar="DIR", help="write the reports into DIR instead")
    p.add_argument(
        "--config",
        metavar="SITE.yaml",
        help="site YAML merged over config/analyze.yaml: for the analysis, and its "
        "visitors.age_bands for the age report",
    )
    args, rest = p.parse_known_args(argv)
    rest = [a for a in rest if a != "--"]
    if args.config is None:  # also when given after "--" with the analysis options
        site = argparse.ArgumentParser(add_help=False)
        site.add_argument("--config")
        found, rest = site.parse_known_args(rest)
        args.config = found.config
    return args, rest


def today() -> date:
    """The machine's date; a function so that tests can move it."""
    return date.today()


def state_path(output: str) -> str:
    return FileSystems.join(output, STATE_NAME)


def read_last_day(output: str) -> date | None:
    """The last day a nightly run completed on ``output``; None before the first run."""
    path = state_path(output)
    try:
        if is_remote(path):
            if not FileSystems.exists(path):
                return None
            with FileSystems.open(path) as f:
                text = f.read().decode()
        else:
            text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    try:
        return date.fromisoformat(json.loads(text)["last_day"])
    except (ValueError, KeyError, TypeError):
        raise UserError(
            f'{path} is not a nightly state file ({{"last_day": "YYYY-MM-DD"}}); fix it, or '
            "remove it and the next run analyses yesterday only"
        ) from None


def write_last_day(output: str, day: date) -> None:
    """Record ``day`` as done. A failure only warns: the analysis is committed, and the next run,
    given these days again, finds them unchanged."""
    path = state_path(output)
    written = datetime.now(UTC).isoformat(timespec="seconds")
    data = json.dumps({"last_day": day.isoformat(), "written_at": written}) + "\n"
    try:
        if is_remote(path):  # an object store replaces an object whole
            with FileSystems.create(path) as f:
                f.write(data.encode())
            return
        temporary = Path(f"{path}.{os.getpid()}.tmp")
        temporary.write_text(data)
        os.replace(temporary, path)  # a crash leaves the old state, never half a file
    except OSError as e:
        log.warning("cannot record %s as done in %s (%s): the next run redoes it", day, path, e)


def days_to_analyse(last_done: date | None, yesterday: date) -> list[date]:
    """Every day after ``last_done`` up to ``yesterday`` (at least yesterday: a second run on
    the same day redoes it, cheaply, and picks up late files), the latest MAX_CATCH_UP_DAYS."""
    first = yesterday if last_done is None else min(last_done + timedelta(days=1), yesterday)
    days = [first + timedelta(days=i) for i in range((yesterday - first).days + 1)]
    if len(days) > MAX_CATCH_UP_DAYS:
        skipped = days[:-MAX_CATCH_UP_DAYS]
        days = days[-MAX_CATCH_UP_DAYS:]
        log.warning(
            "%d days since the last nightly run (%s): analysing the latest %d from %s; the %d "
            "days %s to %s stay unanalysed (python -m jobs.nightly --date DAY does one)",
            len(skipped) + len(days),
            last_done,
            len(days),
            days[0],
            len(skipped),
            skipped[0],
            skipped[-1],
        )
    return days


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    setup_logging(verbose=bool({"-v", "--verbose"} & set(extra)))
    if args.report_out:  # checked before the night's analysis, not after it
        check_writable(args.report_out, folder=True)
    analyze.check_filesystem(args.output, "output")  # before the state file is read there
    if args.date:
        days = [args.date]
    else:
        last_done = read_last_day(args.output)
        days = days_to_analyse(last_done, today() - timedelta(days=1))
        span = f"{days[0]} to {days[-1]}, {len(days)} days" if len(days) > 1 else f"{days[0]}"
        since = f"the last run completed {last_done}" if last_done else "the first run"
        log.info("nightly: analysing %s (%s)", span, since)
    site = ["--config", args.config] if args.config else []
    selection = [word for day in days for word in ("--date", day.isoformat())]
    code = run(
        analyze.main,
        ["--input", args.input, "--output", args.output, *selection, *site, *extra],
    )
    if code not in (EXIT_OK, EXIT_SOME_FAILED):  # nothing done, or interrupted: no reports
        return code
    if not args.date:
        write_last_day(args.output, days[-1])
    report_args = ["--data", args.output, "--from", days[0].isoformat()]
    report_args += ["--to", days[-1].isoformat(), "--format", args.format]
    if args.report_out:
        report_args += ["--out", args.report_out]
    if args.config:  # valid: the analysis has read it; its age bands are the report's
        report_args += ["--config", args.config]
    report_code = report.main(report_args)
    return max(code, report_code)


if __name__ == "__main__":
    sys.exit(run(main))
