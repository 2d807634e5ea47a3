"""python -m jobs.nightly --input videos/ --output output/ : one night's routine.

Analyses the videos that start on the given day (default: yesterday, by the pipeline's start-time
rule), incrementally, then prints that day's reports. Exit status is the analysis's: 0 all ok,
1 some inputs failed (the rest are written and reported), 2 usage or configuration error,
130 interrupted (what was committed stays).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta

from jobs import analyze, report
from jobs.cli import EXIT_OK, EXIT_SOME_FAILED, ArgumentParser, check_writable, run
from reports.formats import FORMATS


def parse_args(argv):
    p = ArgumentParser(
        prog="python -m jobs.nightly",
        description="Analyse one day's kiosk videos into --output and print that day's reports.",
        epilog="Options after -- are passed to jobs.analyze (e.g. -- --workers 2 --detections).",
    )
    p.add_argument("--input", required=True, help="folder of recordings (searched recursively)")
    p.add_argument("--output", default="output", help="tables folder (default: output/)")
    p.add_argument(
        "--date",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="the day to analyse (default: yesterday)",
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


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    day = args.date or date.today() - timedelta(days=1)
    if args.report_out:  # checked before the night's analysis, not after it
        check_writable(args.report_out, folder=True)
    site = ["--config", args.config] if args.config else []
    code = run(
        analyze.main,
        ["--input", args.input, "--output", args.output, "--date", day.isoformat(), *site, *extra],
    )
    if code not in (EXIT_OK, EXIT_SOME_FAILED):  # nothing done, or interrupted: no reports
        return code
    report_args = [
        "--data",
        args.output,
        "--from",
        day.isoformat(),
        "--to",
        day.isoformat(),
        "--format",
        args.format,
    ]
    if args.report_out:
        report_args += ["--out", args.report_out]
    if args.config:  # valid: the analysis has read it; its age bands are the report's
        report_args += ["--config", args.config]
    report_code = report.main(report_args)
    return max(code, report_code)


if __name__ == "__main__":
    sys.exit(run(main))
