"""What an output folder already holds, per input path: the incremental run's memory.

Read through the views (``schemas.views``), so only committed analyses count, each video at its
latest analysis. The rule that decides from it what to analyse again is the pipeline's
(``pipelines.inputs.needs_analysis``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from common.paths import is_remote
from schemas.views import connect, fetch


@dataclass(frozen=True)
class ManifestEntry:
    """What the output holds for an input path (its latest ``videos`` row)."""

    size_bytes: int
    mtime: float  # seconds since the epoch
    fingerprint: str
    model_version: str
    status: str
    date: date
    camera: str


def read_manifest(output: str) -> dict[str, ManifestEntry]:
    """Input path → its entry; empty for a remote output, where runs are not incremental.
    ``schemas.views.TablesError`` when a file under the output cannot be read."""
    if is_remote(output):
        return {}
    # The views give mtime as TIMESTAMPTZ whether a file stored it naive (before the UTC type)
    # or with its zone, so epoch_us is the instant either way and old videos match unchanged.
    sql = (
        "SELECT video, size_bytes, epoch_us(mtime) / 1e6, fingerprint, model_version, status, "
        "date, camera FROM videos"
    )
    return {r[0]: ManifestEntry(*r[1:]) for r in fetch(connect(output), sql)}
