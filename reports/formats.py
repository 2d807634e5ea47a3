"""Format report results: a terminal table, CSV, Markdown, or one self-contained HTML page.

Every function takes the mapping :func:`reports.catalog.run_reports` returns (report name to
``(Report, pyarrow.Table)``) and a ``context`` of display facts (data folder, filters, ...).
The HTML page embeds its charts as base64 PNGs drawn with matplotlib's Agg canvas (no pyplot, no
display, no global backend switch), so it opens offline from a mail attachment.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from reports.catalog import Report

FORMATS = ("table", "csv", "markdown", "html")
# The file each format writes into --out (csv: one file per report, named after it).
FILENAMES = {"table": "report.txt", "markdown": "report.md", "html": "report.html"}
PAGE_TITLE = "Kiosk visitor report"

Results = Mapping[str, tuple[Report, pa.Table]]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def cell(value: Any) -> str:
    """A value as people read it: no trailing zeros, ISO dates, empty for NULL."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else f"{value:g}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def _decimals(value: float) -> int:
    text = f"{value:.6f}".rstrip("0")
    return len(text) - text.index(".") - 1


def formatted_rows(table: pa.Table) -> list[list[str]]:
    """Every cell as text; a float column shows all its values with the same number of decimals."""
    columns = []
    for field, values in zip(table.schema, table.columns, strict=True):
        values = values.to_pylist()
        if pa.types.is_floating(field.type):
            plain = [v is not None and math.isfinite(v) and abs(v) < 1e15 for v in values]
            places = max(
                (_decimals(v) for v, ok in zip(values, plain, strict=True) if ok), default=0
            )
            columns.append(
                [f"{v:.{places}f}" if ok else cell(v) for v, ok in zip(values, plain, strict=True)]
            )
        else:
            columns.append([cell(v) for v in values])
    return [list(row) for row in zip(*columns, strict=True)]


def _numeric_columns(table: pa.Table) -> list[bool]:
    return [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in table.schema
    ]


def _context_line(context: Mapping[str, Any]) -> str:
    return "; ".join(f"{k}: {cell(v)}" for k, v in context.items() if v not in (None, ""))


# -- terminal table -----------------------------------------------------------------------------


def text_table(table: pa.Table) -> str:
    """Columns padded to their widest value; numbers right-aligned, text left-aligned."""
    if table.num_rows == 0:
        return "(no rows)"
    names = table.column_names
    rows = formatted_rows(table)
    numeric = _numeric_columns(table)
    widths = [max(len(n), *(len(r[i]) for r in rows)) for i, n in enumerate(names)]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def to_text(results: Results, context: Mapping[str, Any] | None = None) -> str:
    parts = [PAGE_TITLE]
    if context:
        parts.append(_context_line(context))
    for report, table in results.values():
        parts.append(f"\n{report.title}\n{'=' * len(report.title)}\n{text_table(table)}")
    return "\n".join(parts) + "\n"


# -- CSV ----------------------------------------------------------------------------------------


def csv_text(table: pa.Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow([cell(v) for v in row.values()])
    return buf.getvalue()


def to_csv(results: Results) -> str:
    """One report: plain CSV. Several: each after a ``# name`` line, separated by a blank line."""
    if len(results) == 1:
        ((_, table),) = results.values()
        return csv_text(table)
    return "\n".join(f"# {name}\n{csv_text(table)}" for name, (_, table) in results.items())


# -- Markdown -----------------------------------------------------------------------------------


def markdown_table(table: pa.Table) -> str:
    if table.num_rows == 0:
        return "_No rows for this selection._"

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    numeric = _numeric_columns(table)
    out = [
        "| " + " | ".join(esc(n) for n in table.column_names) + " |",
        "|" + "|".join("---:" if num else "---" for num in numeric) + "|",
    ]
    for row in formatted_rows(table):
        out.append("| " + " | ".join(esc(v) for v in row) + " |")
    return "\n".join(out)


def to_markdown(results: Results, context: Mapping[str, Any] | None = None) -> str:
    parts = [f"# {PAGE_TITLE}"]
    if context:
        parts.append(_context_line(context))
    for report, table in results.values():
        parts += [f"## {report.title}", report.summary, markdown_table(table)]
    return "\n\n".join(p for p in parts if p) + "\n"


# -- charts -------------------------------------------------------------------------------------


def _ordered(values: list[Any]) -> list[Any]:
    """Distinct values: sorted when they are all numbers or all dates, else first-seen order."""
    distinct = list(dict.fromkeys(values))
    if all(_is_number(v) for v in distinct) or all(isinstance(v, date) for v in distinct):
        return sorted(distinct)
    return distinct


def chart_series(report: Report, table: pa.Table) -> tuple[list[str], dict[str, list[float]]]:
    """The x labels and one list of y values per plotted series (values summed per x, series)."""
    chart = report.chart
    if chart is None or table.num_rows == 0:
        return [], {}
    wanted = [chart.x, *chart.y] + ([chart.series] if chart.series else [])
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise ValueError(f"{report.name}: @chart names missing column(s) {', '.join(missing)}")
    rows = table.to_pylist()
    xs = _ordered([r[chart.x] for r in rows])
    sums: dict[tuple[str, Any], float] = {}
    if chart.series:
        labels = _ordered([r[chart.series] for r in rows])
        for r in rows:
            key = (r[chart.series], r[chart.x])
            sums[key] = sums.get(key, 0.0) + float(r[chart.y[0]] or 0)
    else:
        labels = list(chart.y)
        for r in rows:
            for y in chart.y:
                sums[(y, r[chart.x])] = sums.get((y, r[chart.x]), 0.0) + float(r[y] or 0)
    series = {cell(s): [sums.get((s, x), 0.0) for x in xs] for s in labels}
    return [cell(x) for x in xs], series


def chart_png(report: Report, table: pa.Table) -> bytes | None:
    """The report's chart as PNG bytes; None when it has no chart or nothing to draw."""
    xs, series = chart_series(report, table)
    if not xs or not any(v for values in series.values() for v in values):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    chart = report.chart
    fig = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = list(range(len(xs)))
    if chart.kind == "line":
        for label, values in series.items():
            ax.plot(positions, values, marker="o", label=label)
    else:
        width = 0.8 / len(series)
        for i, (label, values) in enumerate(series.items()):
            offset = (i - (len(series) - 1) / 2) * width
            ax.bar([p + offset for p in positions], values, width=width, label=label)
    ax.set_xticks(
        positions, xs, rotation=30 if len(xs) > 8 else 0, ha="right" if len(xs) > 8 else "center"
    )
    ax.set_xlabel(chart.x)
    ax.set_ylabel(chart.ylabel or (chart.y[0] if len(chart.y) == 1 else ""))
    if all(float(v).is_integer() for values in series.values() for v in values):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if len(series) > 1 or chart.series:
        ax.legend(title=chart.series, fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 62rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.meta, .desc { color: #555; font-size: .9rem; }
nav ul { padding-left: 1.2rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .8rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; }
.empty { color: #888; font-style: italic; }
"""


def html_table(table: pa.Table) -> str:
    if table.num_rows == 0:
        return '<p class="empty">No rows for this selection.</p>'
    numeric = _numeric_columns(table)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in table.column_names)
    body = []
    for row in formatted_rows(table):
        tds = "".join(
            f'<td class="num">{html.escape(v)}</td>' if num else f"<td>{html.escape(v)}</td>"
            for v, num in zip(row, numeric, strict=True)
        )
        body.append(f"<tr>{tds}</tr>")
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )


def to_html(results: Results, context: Mapping[str, Any] | None = None) -> str:
    """One self-contained page: every table, and every chart as an embedded PNG."""
    sections, toc = [], []
    for name, (report, table) in results.items():
        anchor = html.escape(name, quote=True)
        toc.append(f'<li><a href="#{anchor}">{html.escape(report.title)}</a></li>')
        parts = [f'<section id="{anchor}">', f"<h2>{html.escape(report.title)}</h2>"]
        for paragraph in report.summary.split("\n\n"):
            if paragraph:
                parts.append(f'<p class="desc">{html.escape(paragraph)}</p>')
        png = chart_png(report, table)
        if png:
            data = base64.b64encode(png).decode("ascii")
            alt = html.escape(f"Chart: {report.title}", quote=True)
            parts.append(f'<img src="data:image/png;base64,{data}" alt="{alt}">')
        parts += [html_table(table), "</section>"]
        sections.append("\n".join(parts))
    meta = html.escape(_context_line(context or {}))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(PAGE_TITLE)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{html.escape(PAGE_TITLE)}</h1>
<p class="meta">{meta}</p>
<nav><ul>
{chr(10).join(toc)}
</ul></nav>
{chr(10).join(sections)}
</body>
</html>
"""


# -- entry points -------------------------------------------------------------------------------


def render(results: Results, fmt: str, context: Mapping[str, Any] | None = None) -> str:
    """All results in one format, as one string (what the command prints without --out)."""
    if fmt == "table":
        return to_text(results, context)
    if fmt == "csv":
        return to_csv(results)
    if fmt == "markdown":
        return to_markdown(results, context)
    if fmt == "html":
        return to_html(results, context)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def write(
    results: Results, fmt: str, out_dir: str | Path, context: Mapping[str, Any] | None = None
) -> list[Path]:
    """Write the results into ``out_dir`` (created): one file, or one CSV file per report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        paths = []
        for name, (_, table) in results.items():
            path = out / f"{name}.csv"
            path.write_text(csv_text(table), encoding="utf-8")
            paths.append(path)
        return paths
    if fmt not in FILENAMES:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    path = out / FILENAMES[fmt]
    path.write_text(render(results, fmt, context), encoding="utf-8")
    return [path]
