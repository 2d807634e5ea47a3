"""Values as people read them: the cell text every output format shares (text, CSV, HTML)."""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa


def is_number(value: Any) -> bool:
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


def numeric_columns(table: pa.Table) -> list[bool]:
    return [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in table.schema
    ]


def words(column: str) -> str:
    """A column name as axis or panel words: ``median_dwell_s`` is "median dwell (s)"."""
    for suffix, unit in (("_pct", " (%)"), ("_s", " (s)"), ("_h", " (h)")):
        if column.endswith(suffix):
            return column[: -len(suffix)].replace("_", " ") + unit
    return column.replace("_", " ")


def vertical(table: pa.Table) -> pa.Table:
    """A one-row table as ``item``/``value`` rows: a summary's many columns read down a page."""
    if table.num_rows != 1:
        return table
    row = table.to_pylist()[0]
    return pa.table({"item": list(row), "value": [cell(v) for v in row.values()]})
