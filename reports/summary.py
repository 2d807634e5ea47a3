"""The summary report's one row (``reports/sql/summary.sql``) as the sentences and facts at the top
of the HTML page: the SQL computes every number, this module only words them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

Facts = list[tuple[str, str]]


def _day(d: date) -> str:
    return f"{d.day} {d:%B %Y}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def period_text(row: Mapping[str, Any]) -> str:
    start, end, days = row.get("period_from"), row.get("period_to"), row.get("days") or 0
    if start is None and end is None:
        return "no videos yet"
    if start is None:  # one end given by the user, and no video to set the other
        span = f"until {_day(end)}"
    elif end is None:
        span = f"from {_day(start)}"
    else:
        span = _day(start) if start == end else f"{_day(start)} to {_day(end)}"
    return f"{span} ({_count(days, 'day')} with video)"


def duration_text(seconds: float) -> str:
    """A dwell time as people say it: "12 s", "5 min 51 s", "1 h 2 min"."""
    if seconds < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    whole = int(seconds + 0.5)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def band_text(label: str) -> str:
    """An age-band label in words: '<30' under 30, '20-29' 20 to 29, '60+' 60 and over."""
    if label.startswith("<"):
        return f"under {label[1:]} years"
    if label.endswith("+"):
        return f"{label[:-1]} years and over"
    return f"{label.replace('-', ' to ')} years"


def _hour_text(hour: int) -> str:
    return f"{hour:02d}:00\u2013{(hour + 1) % 24:02d}:00"


def _pct(value: float | None) -> str:
    return "\u2013" if value is None else f"{value:.0f} %"


def headline(row: Mapping[str, Any]) -> str:
    visitors, videos = row.get("visitors") or 0, row.get("videos") or 0
    if not videos:
        return "No visitors in this period: no video was analysed."
    if not visitors:
        return f"No visitors in this period ({_count(videos, 'video')} analysed)."
    cameras = row.get("cameras") or []
    return f"{_count(visitors, 'visitor')} at {_count(len(cameras), 'camera')}."


def summary_facts(row: Mapping[str, Any]) -> Facts:
    """(label, value) pairs in reading order; the visitor facts only when there are visitors."""
    visitors, videos, failed = (row.get(k) or 0 for k in ("visitors", "videos", "videos_failed"))
    facts = [
        ("Period", period_text(row)),
        ("Cameras", ", ".join(row.get("cameras") or []) or "none"),
        ("Visitors", f"{visitors:,}"),
    ]
    if visitors:
        facts += [
            ("Median time at the kiosk", duration_text(row["median_dwell_s"])),
            ("Women / men", f"{_pct(row.get('female_pct'))} / {_pct(row.get('male_pct'))}"),
        ]
        if row.get("busiest_hour") is not None:
            hour_visitors = _count(row["busiest_hour_visitors"], "visitor")
            facts.append(("Busiest hour", f"{_hour_text(row['busiest_hour'])} ({hour_visitors})"))
        if row.get("largest_age_band"):
            band_visitors = _count(row["largest_age_band_visitors"], "visitor")
            band = band_text(row["largest_age_band"])
            facts.append(("Largest age group", f"{band} ({band_visitors})"))
    facts.append(("Failed videos", f"{failed:,} of {videos:,}" if videos else "no videos"))
    return facts
