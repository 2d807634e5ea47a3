"""Age-band labels: written into ``visitors.age_band`` by the pipeline and read by the reports.

A label is ``'<N'`` (under N), ``'A-B'`` (A to B years inclusive) or ``'N+'`` (N and over). The
pipeline labels a visitor by the band edges of ``visitors.age_bands``; the reports band the age
column themselves by any list of labels (``--age-bands``), so both must read labels one way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

_LABEL = re.compile(r"^(?:<\d+|\d+-\d+|\d+\+)$")
BROAD_AGE_BANDS = ("<30", "30-59", "60+")  # the broad bands of the work the project grew from


class BandError(ValueError):
    """A list of band labels a user typed is unusable; the message says what is wrong."""


def age_band(age: float, edges: tuple[int, ...]) -> str:
    """'0-9', '10-19', ..., '60+' for edges (10, 20, ..., 60)."""
    lower = 0
    for edge in edges:
        if age < edge:
            return f"{lower}-{edge - 1}"
        lower = edge
    return f"{lower}+"


def labels_of_edges(edges: Iterable[int]) -> tuple[str, ...]:
    """Every label ``age_band`` gives for these edges, youngest first."""
    edges = tuple(edges)
    return tuple(age_band(lower, edges) for lower in (0, *edges))


def band_span(label: str) -> tuple[float, float]:
    """A label's ages as [start, end): '<N' [-inf, N), 'A-B' [A, B+1), 'N+' [N, inf)."""
    if not _LABEL.match(label):
        raise BandError(f"bad band '{label}' (want '<N', 'A-B' or 'N+', e.g. 0-9)")
    if label.startswith("<"):
        return -math.inf, float(label[1:])
    if label.endswith("+"):
        return float(label[:-1]), math.inf
    lo, hi = (int(v) for v in label.split("-"))
    return float(lo), float(hi + 1)


def check_bands(labels: Iterable[str], what: str = "age bands") -> list[str]:
    """The labels, stripped, when they are valid and ascending without overlap (each visitor in
    one band at most, so the shares add up); BandError otherwise."""
    labels = [b.strip() for b in labels]
    if not labels:
        raise BandError(f"{what}: give at least one band")
    spans = []
    for label in labels:
        try:
            start, end = band_span(label)
        except BandError as e:
            raise BandError(f"{what}: {e}") from None
        if end <= start:
            raise BandError(f"{what}: band '{label}' ends before it starts")
        spans.append((start, end))
    for k in range(1, len(labels)):
        if spans[k][0] < spans[k - 1][1]:
            raise BandError(
                f"{what}: '{labels[k]}' overlaps or comes before '{labels[k - 1]}'; "
                "list bands in order"
            )
    return labels
