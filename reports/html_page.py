"""The HTML report: one self-contained page for the person who reads it, fit for a mail attachment.

Top to bottom: the summary block (the ``@layout: summary`` report's row in words, and a note on
the model's accuracy and licence), then the charts, each with its title and plain caption
(``@caption``), then every report's table for those who want the numbers. Charts are embedded
as base64 PNGs; the page has no script and loads nothing from elsewhere.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from reports.catalog import Report
from reports.cells import cell, formatted_rows, numeric_columns, vertical, words
from reports.charts import chart_png
from reports.model_facts import model_note
from reports.summary import headline, summary_facts

PAGE_TITLE = "Kiosk visitor report"
Results = Mapping[str, tuple[Report, pa.Table]]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 62rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.3rem; margin-top: 2.4rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
.meta, .desc, figcaption { color: #555; font-size: .92rem; }
.summary { background: #f4f7fb; border: 1px solid #d6e0ec; border-radius: 8px;
           padding: .6rem 1.2rem 1rem; margin-top: 1.2rem; }
.summary h2 { margin-top: .6rem; border: 0; }
.headline { font-size: 1.15rem; font-weight: 600; margin: .2rem 0 .8rem; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(13rem, 1fr));
         gap: .6rem; margin: 0; }
.fact { background: #fff; border: 1px solid #e1e7ef; border-radius: 6px; padding: .5rem .7rem; }
.fact dt { color: #5a6b80; font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; }
.fact dd { margin: .15rem 0 0; font-size: 1.1rem; font-weight: 600; }
.about { border-left: 4px solid #c9a227; background: #fffbea; padding: .4rem 1rem;
         margin-top: 1.2rem; font-size: .9rem; }
.about h3 { margin-top: .4rem; }
figure { margin: 0 0 2rem; }
figcaption { max-width: 48rem; }
nav ul { padding-left: 1.2rem; }
.scroll { overflow-x: auto; }  /* a wide table scrolls on its own, the page keeps its width */
table { border-collapse: collapse; font-size: .85rem; margin: .8rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; vertical-align: top; white-space: nowrap; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; }
.empty { color: #888; font-style: italic; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def html_table(table: pa.Table) -> str:
    if table.num_rows == 0:
        return '<p class="empty">No rows for this selection.</p>'
    numeric = numeric_columns(table)
    # Headers in words ("median dwell (s)"); the column name, as in the CSV, on hover.
    head = "".join(f'<th title="{_e(n)}">{_e(words(n))}</th>' for n in table.column_names)
    body = []
    for row in formatted_rows(table):
        tds = "".join(
            f'<td class="num">{_e(v)}</td>' if num else f"<td>{_e(v)}</td>"
            for v, num in zip(row, numeric, strict=True)
        )
        body.append(f"<tr>{tds}</tr>")
    return (
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody>\n</table></div>"
    )


def _summary_row(results: Results) -> dict | None:
    for report, table in results.values():
        if report.layout == "summary" and table.num_rows:
            return table.to_pylist()[0]
    return None


def summary_block(row: dict | None) -> str:
    """The summary's headline and facts, and the note on the model (always: the page reports
    the model's estimates even when the summary report was not selected)."""
    parts = ['<section id="summary-block" class="summary">', "<h2>Summary</h2>"]
    if row is not None:
        parts.append(f'<p class="headline">{_e(headline(row))}</p>')
        facts = "\n".join(
            f'<div class="fact"><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>'
            for k, v in summary_facts(row)
        )
        parts.append(f'<dl class="facts">\n{facts}\n</dl>')
    versions = row.get("model_versions") if row is not None else None
    notes = "\n".join(f"<p>{_e(p)}</p>" for p in model_note(versions))
    parts += [
        '<div class="about" id="model">',
        "<h3>About the age and gender figures</h3>",
        notes,
        "</div>",
        "</section>",
    ]
    return "\n".join(parts)


def _figure(report: Report, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return "\n".join(
        [
            f'<figure id="chart-{_e(report.name)}">',
            f"<h3>{_e(report.title)}</h3>",
            f'<img src="data:image/png;base64,{data}" alt="{_e("Chart: " + report.title)}">',
            f"<figcaption>{_e(report.caption)}</figcaption>",
            "</figure>",
        ]
    )


def charts_section(results: Results, row: dict | None) -> str:
    figures = []
    for report, table in results.values():
        png = chart_png(report, table) if report.layout != "summary" else None
        if png:
            figures.append(_figure(report, png))
    if not figures:
        quiet = row is not None and not row.get("visitors")
        why = "there were no visitors in this period" if quiet else "no report chosen draws one"
        figures = [f'<p class="empty">No charts: {why}.</p>']
    return "\n".join(['<section id="charts">', "<h2>Charts</h2>", *figures, "</section>"])


def tables_section(results: Results) -> str:
    toc, sections = [], []
    for name, (report, table) in results.items():
        toc.append(f'<li><a href="#{_e(name)}">{_e(report.title)}</a></li>')
        sections.append(
            "\n".join(
                [
                    f'<section id="{_e(name)}">',
                    f"<h3>{_e(report.title)}</h3>",
                    f'<p class="desc">{_e(report.caption)}</p>' if report.caption else "",
                    html_table(vertical(table) if report.layout == "summary" else table),
                    "</section>",
                ]
            )
        )
    return "\n".join(
        [
            '<section id="tables">',
            "<h2>Detailed tables</h2>",
            f"<nav><ul>\n{chr(10).join(toc)}\n</ul></nav>",
            *sections,
            "</section>",
        ]
    )


def _meta(context: Mapping[str, Any]) -> str:
    generated = context.get("generated")
    parts = [f"Generated {generated:%Y-%m-%d %H:%M}" if generated else ""]
    if context.get("data"):
        parts.append(f"from the data in {context['data']}")
    asked = [f"{k} {cell(context[k])}" for k in ("from", "to", "camera") if context.get(k)]
    if asked:  # said here too: the summary block, which shows them, may not have been chosen
        parts.append(f"({', '.join(asked)})")
    return " ".join(p for p in parts if p)


def to_html(results: Results, context: Mapping[str, Any] | None = None) -> str:
    """One self-contained page: summary, charts, then the tables."""
    row = _summary_row(results)
    body = [summary_block(row), charts_section(results, row), tables_section(results)]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(PAGE_TITLE)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_e(PAGE_TITLE)}</h1>
<p class="meta">{_e(_meta(context or {}))}</p>
{chr(10).join(body)}
</body>
</html>
"""
