"""The catalogue of reports: load, list and run the SQL reports in ``reports/sql/`` with DuckDB.

Each report is one plain ``.sql`` file (a single SELECT) that reads the views of
:mod:`schemas.views` (``videos``, ``visitors``, ``detections``), so it sees only committed rows.
The file opens with a comment block: its first line is the report's title, the following lines
its description, and lines of the form ``-- @key: value`` are settings:

``@chart: <bar|line> x=<column> y=<column>[,<column>...] [series=<column>] [options]``
    the chart drawn in the HTML report (optional; y values are summed per x and series; with
    ``series``, one bar or line per value of that column, of the first y column). Options:
    ``xlabel=<words>``, ``ylabel=<words>`` (axis titles, ``_`` for spaces), ``min_x=<n>`` (draw
    only with at least n x values: a trend over one day is a dot), ``panels`` (one small chart
    per y column, for columns of different units);
``@caption: <plain text>``
    what the chart shows and how to read it, for the HTML page's readers: plain words, no SQL
    or parameter names (default: the description). Indented comment lines continue it;
``@layout: summary``
    a one-row report that the HTML page shows as the summary block at its top, and the text
    and markdown formats as ``item value`` lines;
``@order: <number>``
    where the report comes in listings and in the full report (default 1000, then by name).

Parameters are DuckDB named prepared-statement parameters, ``$name``. Every report may use
``$from`` and ``$to`` (DATE, inclusive) and ``$camera`` (VARCHAR); NULL means "no filter", so a
report filters with ``in_period(date, camera, $from, $to, $camera)`` (a macro of
``_macros.sql``). The other parameters have defaults in :data:`DEFAULT_PARAMS`. To run a report
by hand in the ``duckdb`` CLI, create the views (or replace them with ``read_parquet``), run
``_macros.sql`` and use ``PREPARE r AS <file body>;`` then
``EXECUTE r("from" := DATE '2024-05-01', "to" := NULL, camera := NULL);`` (``from`` and ``to``
are SQL keywords, hence the quotes there, not in the file).

Adding a report is adding a file: no Python changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from schemas.bands import BROAD_AGE_BANDS
from schemas.views import connect

SQL_DIR = Path(__file__).resolve().parent / "sql"

DEFAULT_DWELL_BUCKETS = (0.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Finer than dwell's: time facing the camera is a part of the stay, mostly seconds.
DEFAULT_ATTENTION_BUCKETS = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

# ``$age_bands`` has no default here: the site's bands are the analysis settings'
# ``visitors.age_bands`` (``schemas.bands.labels_of_edges``), which jobs.report passes in.
DEFAULT_PARAMS: dict[str, Any] = {
    "from": None,
    "to": None,
    "camera": None,
    "broad_age_bands": list(BROAD_AGE_BANDS),
    "dwell_buckets": list(DEFAULT_DWELL_BUCKETS),
    "attention_buckets": list(DEFAULT_ATTENTION_BUCKETS),
}

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_SETTING = re.compile(r"^@([a-z_]+):\s*(.*)$")


class ReportError(ValueError):
    """A problem with a report or its parameters that the user can fix; the message says how."""


_CHART_USAGE = (
    "want: bar|line x=COL y=COL[,COL] [series=COL] [xlabel=WORDS] [ylabel=WORDS] [min_x=N] [panels]"
)


@dataclass(frozen=True)
class Chart:
    kind: str  # "bar" or "line"
    x: str
    y: tuple[str, ...]
    series: str | None = None
    ylabel: str | None = None
    xlabel: str | None = None
    min_x: int = 1
    panels: bool = False

    @classmethod
    def parse(cls, spec: str, where: str) -> Chart:
        kind, *words = spec.split() or [""]
        opts = dict(w.split("=", 1) for w in words if "=" in w)
        flags = {w for w in words if "=" not in w}
        known = {"x", "y", "series", "xlabel", "ylabel", "min_x"}
        min_x = opts.get("min_x", "1")
        if (
            kind not in ("bar", "line")
            or "x" not in opts
            or "y" not in opts
            or not set(opts) <= known
            or not flags <= {"panels"}
            or not min_x.isdigit()
        ):
            raise ReportError(f"{where}: bad @chart '{spec}' ({_CHART_USAGE})")

        def words_of(key: str) -> str | None:  # axis titles are one token: _ stands for a space
            return opts[key].replace("_", " ") if key in opts else None

        y = tuple(opts["y"].split(","))
        return cls(
            kind,
            opts["x"],
            y,
            opts.get("series"),
            words_of("ylabel"),
            words_of("xlabel"),
            int(min_x),
            "panels" in flags,
        )


@dataclass(frozen=True)
class Report:
    name: str
    path: Path
    title: str
    description: str
    sql: str
    params: tuple[str, ...]  # the $names the SQL uses, in order of first use
    chart: Chart | None = None
    order: float = 1000.0
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """The description without its "Parameters:" paragraph (what readers of a report see)."""
        paragraphs = self.description.split("\n\n")
        return "\n\n".join(p for p in paragraphs if not p.startswith("Parameters:"))

    @property
    def caption(self) -> str:
        """The plain-language caption of the HTML page (``@caption``), else the summary."""
        return self.settings.get("caption") or self.summary

    @property
    def layout(self) -> str | None:
        return self.settings.get("layout")


def _strip_comments(sql: str) -> str:
    """The SQL without ``--`` comments and string literals (to find ``$names`` in the code)."""
    return re.sub(r"--[^\n]*|'(?:[^']|'')*'", " ", sql)


def _header(sql: str) -> list[str]:
    """The opening comment block's lines, after ``--`` (indentation kept, for continuations)."""
    header: list[str] = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped.startswith("--"):
            if stripped:
                break
            if header:
                header.append("")
            continue
        header.append(stripped[2:].rstrip())
    return header


def _split_header(header: list[str]) -> tuple[dict[str, str], list[str]]:
    """Settings (``@key: value``, continued by the indented lines after it) and the text lines."""
    settings: dict[str, str] = {}
    text: list[str] = []
    key = None
    for line in header:
        m = _SETTING.match(line.strip())
        if m:
            key = m.group(1)
            settings[key] = m.group(2).strip()
        elif key and line.startswith("  ") and line.strip():
            settings[key] = f"{settings[key]} {line.strip()}"
        else:
            key = None
            text.append(line.strip())
    return settings, text


def load_report(path: str | Path) -> Report:
    path = Path(path)
    sql = path.read_text(encoding="utf-8")
    settings, text = _split_header(_header(sql))
    while text and not text[0]:
        text.pop(0)
    title = text.pop(0) if text else path.stem.replace("_", " ").capitalize()
    # Paragraphs are separated by empty comment lines; keep them apart.
    paragraphs = [" ".join(p.split()) for p in "\n".join(text).split("\n\n") if p.strip()]
    description = "\n\n".join(paragraphs)
    params = tuple(dict.fromkeys(_PARAM.findall(_strip_comments(sql))))
    chart = Chart.parse(settings["chart"], path.name) if "chart" in settings else None
    try:
        order = float(settings.get("order", 1000))
    except ValueError as exc:
        raise ReportError(f"{path.name}: bad @order '{settings['order']}'") from exc
    return Report(path.stem, path, title, description, sql, params, chart, order, settings)


def list_reports(sql_dir: str | Path = SQL_DIR) -> list[Report]:
    """Every ``*.sql`` report in ``sql_dir``, in their ``@order`` (then by name); files whose
    name starts with ``_`` hold shared SQL (macros), not reports."""
    paths = sorted(p for p in Path(sql_dir).glob("*.sql") if not p.name.startswith("_"))
    reports = [load_report(p) for p in paths]
    return sorted(reports, key=lambda r: (r.order, r.name))


def select_reports(names: Iterable[str] | None, sql_dir: str | Path = SQL_DIR) -> list[Report]:
    """The named reports (all when ``names`` is empty); ReportError names any unknown one."""
    reports = list_reports(sql_dir)
    names = list(names or [])
    if not names:
        return reports
    by_name = {r.name: r for r in reports}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ReportError(
            f"unknown report {', '.join(repr(n) for n in unknown)}; "
            f"known: {', '.join(by_name) or '(none)'}"
        )
    return [by_name[n] for n in dict.fromkeys(names)]


def check_buckets(edges: Iterable[float], what: str = "dwell buckets") -> list[float]:
    edges = [float(e) for e in edges]
    if not edges:
        raise ReportError(f"{what}: give at least one edge")
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ReportError(f"{what}: edges must be strictly ascending, got {edges}")
    return edges


def report_params(report: Report, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameter values ``report`` uses: ``params`` over :data:`DEFAULT_PARAMS`."""
    merged = {**DEFAULT_PARAMS, **(params or {})}
    missing = [p for p in report.params if p not in merged]
    if missing:
        raise ReportError(
            f"report {report.name!r} needs parameter(s) {', '.join(missing)} with no default"
        )
    values = {p: merged[p] for p in report.params}
    for key in ("from", "to"):
        if isinstance(values.get(key), str):
            values[key] = date.fromisoformat(values[key])
    return values


def run_report(
    con: duckdb.DuckDBPyConnection, report: Report, params: Mapping[str, Any] | None = None
) -> pa.Table:
    """Run one report on a connection made by :func:`schemas.views.connect`."""
    return relation(con, report, params).to_arrow_table()


def relation(
    con: duckdb.DuckDBPyConnection, report: Report, params: Mapping[str, Any] | None = None
) -> duckdb.DuckDBPyRelation:
    """The report as a DuckDB relation, to filter, join or ``.show()`` further."""
    # The shipped macros first, so a report copied into a --sql-dir folder still finds them;
    # that folder's own _*.sql then add to them or replace them.
    for folder in dict.fromkeys([SQL_DIR, report.path.parent]):
        for shared in sorted(folder.glob("_*.sql")):
            con.execute(shared.read_text(encoding="utf-8"))
    return con.sql(report.sql, params=report_params(report, params))


def run_reports(
    output: str | Path,
    names: Iterable[str] | None = None,
    params: Mapping[str, Any] | None = None,
    sql_dir: str | Path = SQL_DIR,
    con: duckdb.DuckDBPyConnection | None = None,
) -> dict[str, tuple[Report, pa.Table]]:
    """Run the named reports (all by default) over an analysis output folder, in order."""
    reports = select_reports(names, sql_dir)
    con = connect(str(output), con)
    return {r.name: (r, run_report(con, r, params)) for r in reports}
