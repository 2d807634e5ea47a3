"""Format report results: a terminal table, CSV, Markdown, or one self-contained HTML page.

Every function takes the mapping :func:`reports.catalog.run_reports` returns (report name to
``(Report, pyarrow.Table)``) and a ``context`` of display facts (data folder, filters, ...).
The HTML page, written for the person who reads it rather than for developers, is built in
:mod:`reports.html_page`; its charts in :mod:`reports.charts`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from reports.catalog import Report
from reports.cells import cell, formatted_rows, numeric_columns, vertical
from reports.html_page import PAGE_TITLE, to_html

FORMATS = ("table", "csv", "markdown", "html")
# The file each format writes into --out (csv: one file per report, named after it).
FILENAMES = {"table": "report.txt", "markdown": "report.md", "html": "report.html"}

Results = Mapping[str, tuple[Report, pa.Table]]


def _context_line(context: Mapping[str, Any]) -> str:
    return "; ".join(f"{k}: {cell(v)}" for k, v in context.items() if v not in (None, ""))


def _shown(report: Report, table: pa.Table) -> pa.Table:
    """The table as the text formats show it: a summary's one wide row read down the page."""
    return vertical(table) if report.layout == "summary" else table


# -- terminal table -----------------------------------------------------------------------------


def text_table(table: pa.Table) -> str:
    """Columns padded to their widest value; numbers right-aligned, text left-aligned."""
    if table.num_rows == 0:
        return "(no rows)"
    names = table.column_names
    rows = formatted_rows(table)
    numeric = numeric_columns(table)
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
        title = f"\n{report.title}\n{'=' * len(report.title)}"
        parts.append(f"{title}\n{text_table(_shown(report, table))}")
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

    numeric = numeric_columns(table)
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
        parts += [f"## {report.title}", report.summary, markdown_table(_shown(report, table))]
    return "\n\n".join(p for p in parts if p) + "\n"


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
