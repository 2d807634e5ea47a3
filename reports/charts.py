"""A report's ``@chart`` as PNG bytes, drawn with matplotlib's Agg canvas: no pyplot, no display,
no global backend switch, so reports run the same on a server and in a test."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pyarrow as pa
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.catalog import Chart, Report
from reports.cells import cell, is_number, words


def _ordered(values: list[Any]) -> list[Any]:
    """Distinct values: sorted when they are all numbers or all dates, else first-seen order."""
    distinct = list(dict.fromkeys(values))
    if all(is_number(v) for v in distinct) or all(isinstance(v, date) for v in distinct):
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


def _whole(values: list[float]) -> bool:
    return all(float(v).is_integer() for v in values)


def _x_axis(ax: Axes, xs: list[str], label: str) -> None:
    slanted = len(xs) > 8 or sum(len(x) for x in xs) > 60  # long labels would overlap
    ax.set_xticks(
        range(len(xs)), xs, rotation=30 if slanted else 0, ha="right" if slanted else "center"
    )
    ax.set_xlabel(label)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _draw(ax: Axes, chart: Chart, xs: list[str], series: dict[str, list[float]]) -> None:
    positions = list(range(len(xs)))

    def names(label: str) -> str:  # legend: y columns in words, a series column's values as is
        return label if chart.series else words(label)

    if chart.kind == "line":
        for label, values in series.items():
            ax.plot(positions, values, marker="o", label=names(label))
        # From zero: an autoscaled axis draws a day of 40 after a day of 50 as a fall to nothing.
        ax.set_ylim(bottom=0)
    else:
        width = 0.8 / len(series)
        for i, (label, values) in enumerate(series.items()):
            offset = (i - (len(series) - 1) / 2) * width
            ax.bar([p + offset for p in positions], values, width=width, label=names(label))
    _x_axis(ax, xs, chart.xlabel or words(chart.x))
    ax.set_ylabel(chart.ylabel or (words(chart.y[0]) if len(chart.y) == 1 else ""))
    if _whole([v for values in series.values() for v in values]):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(series) > 1 or chart.series:
        ax.legend(title=words(chart.series) if chart.series else None, fontsize="small")


def _draw_panels(fig: Figure, chart: Chart, xs: list[str], series: dict[str, list[float]]) -> None:
    """One small bar chart per y column, side by side: columns of different units (visitors,
    seconds, percent) would make one shared axis unreadable."""
    for i, (column, values) in enumerate(series.items()):
        ax = fig.add_subplot(1, len(series), i + 1)
        ax.bar(range(len(xs)), values, width=0.6, color=f"C{i}")
        ax.set_title(words(column), fontsize="medium")
        _x_axis(ax, xs, chart.xlabel or words(chart.x))
        if _whole(values):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def chart_png(report: Report, table: pa.Table) -> bytes | None:
    """The report's chart as PNG bytes; None when it has no chart, nothing to draw, or fewer x
    values than its ``min_x``."""
    xs, series = chart_series(report, table)
    if not xs or not any(v for values in series.values() for v in values):
        return None
    chart = report.chart
    if len(xs) < chart.min_x:
        return None
    fig = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    if chart.panels:
        _draw_panels(fig, chart, xs, series)
    else:
        _draw(fig.add_subplot(), chart, xs, series)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
