"""Run the SQL reports over an analysis output folder and print or write them.

    python -m jobs.report --data output/ [--from DATE] [--to DATE] [--camera ID]
        [--format table|csv|markdown|html] [--out DIR] [--list] [--report NAME ...]

Other jobs call :func:`main` with an argument list and get the exit status back.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import duckdb

from common.config import ConfigError
from common.messages import first_line
from jobs.cli import (
    EXIT_OK,
    EXIT_USAGE,
    ArgumentParser,
    JobFailed,
    UserError,
    reader_may_leave,
    run,
)
from pipelines.settings import load_settings
from reports import catalog, formats
from schemas.bands import BROAD_AGE_BANDS, BandError, check_bands, labels_of_edges
from schemas.tables import camera_id
from schemas.views import TablesError, connect, fetch

DESCRIPTION = """\
Run the DuckDB SQL reports over the Parquet tables of an analysis output folder (read in place
through the views of schemas/views.py, which hide rows of unfinished analyses) and print them,
or write them into a folder. Each report is one .sql file in reports/sql/ (see --list); edit one
or drop a new file there (or in --sql-dir) to change or add a report."""

EPILOG = """\
examples:
  python -m jobs.report --data output/                       every report, as terminal tables
  python -m jobs.report --data output/ --from 2024-05-01 --to 2024-05-07 --camera entrance
  python -m jobs.report --data output/ --report daily_summary --format csv
  python -m jobs.report --data output/ --format html --out reports-out/   one page for e-mail
  python -m jobs.report --list

formats: table (readable terminal table), csv (one report: plain CSV; several: each after a
'# name' line; with --out: one NAME.csv per report), markdown, html (one self-contained page for
a store manager: a summary with the model's accuracy and licence, the charts with plain captions,
then the tables; with --out: report.html). Without --out the result goes to stdout.

exit status: 0 done (also when there are no rows yet); 1 a report failed while reading the data
(e.g. a damaged Parquet file); 2 usage error (bad option, date or band, unknown report, missing
data folder, unwritable --out)."""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date '{text}' (want YYYY-MM-DD)") from None


def _bands(text: str) -> list[str]:
    try:
        return check_bands(text.split(","))
    except BandError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _buckets(text: str) -> list[float]:
    try:
        return catalog.check_buckets(float(v) for v in text.split(","))
    except ValueError as exc:
        msg = str(exc) if isinstance(exc, catalog.ReportError) else f"not numbers: '{text}'"
        raise argparse.ArgumentTypeError(msg) from None


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m jobs.report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="the analysis output folder (holds videos/, visitors/); required unless --list",
    )
    p.add_argument(
        "--from",
        dest="date_from",
        type=_date,
        metavar="DATE",
        help="first day to include, YYYY-MM-DD (the recording day of the video)",
    )
    p.add_argument(
        "--to", dest="date_to", type=_date, metavar="DATE", help="last day to include, YYYY-MM-DD"
    )
    p.add_argument("--camera", metavar="ID", help="only this camera (default: all cameras)")
    p.add_argument(
        "--format", choices=formats.FORMATS, default="table", help="output format (default: table)"
    )
    p.add_argument(
        "--out", metavar="DIR", help="write the result into DIR (created) instead of printing it"
    )
    p.add_argument("--list", action="store_true", help="list the reports and exit")
    p.add_argument(
        "--report",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="run only these reports (default: all), in the order given",
    )
    _add_bands(p)
    p.add_argument(
        "--sql-dir",
        default=str(catalog.SQL_DIR),
        metavar="DIR",
        help="folder of report .sql files (default: the reports/sql/ shipped with the project)",
    )
    return p


def _add_bands(p: ArgumentParser) -> None:
    """The options that say how reports group visitors."""
    p.add_argument(
        "--config",
        metavar="SITE.yaml",
        help="the site's analysis config: its visitors.age_bands are the default --age-bands",
    )
    p.add_argument(
        "--age-bands",
        type=_bands,
        metavar="BANDS",
        help="comma-separated age bands for age_gender: '<N', 'A-B' or 'N+' (default: the bands "
        "of the analysis settings' visitors.age_bands, as in the visitors table's age_band)",
    )
    p.add_argument(
        "--broad-age-bands",
        type=_bands,
        default=list(BROAD_AGE_BANDS),
        metavar="BANDS",
        help=f"age bands for age_gender_broad (default: {','.join(BROAD_AGE_BANDS)})",
    )
    p.add_argument(
        "--dwell-buckets",
        type=_buckets,
        default=list(catalog.DEFAULT_DWELL_BUCKETS),
        metavar="EDGES",
        help="ascending lower edges in seconds of the dwell_distribution buckets "
        f"(default: {','.join(f'{v:g}' for v in catalog.DEFAULT_DWELL_BUCKETS)})",
    )
    p.add_argument(
        "--attention-buckets",
        type=_buckets,
        default=list(catalog.DEFAULT_ATTENTION_BUCKETS),
        metavar="EDGES",
        help="ascending lower edges in seconds of the attention_distribution buckets "
        f"(default: {','.join(f'{v:g}' for v in catalog.DEFAULT_ATTENTION_BUCKETS)})",
    )


def _list(reports: list[catalog.Report]) -> str:
    width = max((len(r.name) for r in reports), default=0)
    lines = []
    for r in reports:
        extra = [p for p in r.params if p not in ("from", "to", "camera")]
        note = f"  [{', '.join('$' + p for p in extra)}]" if extra else ""
        lines.append(f"{r.name.ljust(width)}  {r.title}{note}")
    return "\n".join(lines) + "\n"


def _report(args: argparse.Namespace) -> int:
    reports = _chosen_reports(args)
    if args.list:
        with reader_may_leave():
            sys.stdout.write(_list(reports))
        return EXIT_OK
    data = _data_folder(args)
    # The folder name a user types ('Café Nord') is stored as its camera id ('Café_Nord').
    camera = camera_id(args.camera) if args.camera else None
    params = {
        "from": args.date_from,
        "to": args.date_to,
        "camera": camera,
        "age_bands": args.age_bands or _site_age_bands(args.config),
        "broad_age_bands": args.broad_age_bands,
        "dwell_buckets": args.dwell_buckets,
        "attention_buckets": args.attention_buckets,
    }
    results = _run(reports, data, camera, params)
    context = {
        "data": str(data),
        "from": args.date_from,
        "to": args.date_to,
        "camera": camera,
        "generated": datetime.now().replace(microsecond=0),
    }
    try:
        if args.out:
            paths = formats.write(results, args.format, args.out, context)
            text = "".join(f"wrote {path}\n" for path in paths)
        else:
            text = formats.render(results, args.format, context)
    except ValueError as exc:  # a @chart naming a column the report does not have
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write to '{args.out}': {exc.strerror or exc}") from None
    with reader_may_leave():
        sys.stdout.write(text)
    return EXIT_OK


def _chosen_reports(args: argparse.Namespace) -> list[catalog.Report]:
    try:
        reports = catalog.select_reports(args.report, args.sql_dir)
    except (catalog.ReportError, OSError) as exc:
        raise UserError(str(exc)) from None
    if not reports:
        raise UserError(f"no report .sql files in {args.sql_dir}")
    return reports


def _data_folder(args: argparse.Namespace) -> Path:
    if not args.data:
        raise UserError("--data DIR is required (the analysis output folder)")
    data = Path(args.data)
    if not data.is_dir():
        what = "is not a folder" if data.exists() else "does not exist"
        raise UserError(f"data folder '{data}' {what}")
    if args.date_from and args.date_to and args.date_from > args.date_to:
        raise UserError(f"--from {args.date_from} is after --to {args.date_to}")
    return data


def _site_age_bands(config: str | None) -> list[str]:
    """The bands the visitors table's age_band holds under the site's analysis settings."""
    try:
        return list(labels_of_edges(load_settings(config).visitors.age_bands))
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def _run(reports, data: Path, camera: str | None, params: dict) -> dict:
    """Each report's result, in order; a report that fails on the data stops the job (exit 1)."""
    results = {}
    con = None
    for report in reports:
        try:
            if con is None:
                con = connect(str(data))
                _warn_unknown_camera(con, camera)
            results[report.name] = (report, catalog.run_report(con, report, params))
        except catalog.ReportError as exc:
            raise UserError(str(exc)) from None
        except (duckdb.Error, TablesError) as exc:
            raise JobFailed(f"report {report.name} failed: {first_line(exc)}") from None
    return results


def _warn_unknown_camera(con: duckdb.DuckDBPyConnection, camera: str | None) -> None:
    """A camera the data never saw gives empty reports: say so rather than print zeros."""
    if camera is None:
        return
    known = [row[0] for row in fetch(con, "SELECT DISTINCT camera FROM videos ORDER BY 1")]
    if camera not in known:
        print(
            f"warning: no camera '{camera}' in the data (cameras: {', '.join(known) or 'none'})",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed on one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run(lambda _: _report(args))


if __name__ == "__main__":
    sys.exit(main())
