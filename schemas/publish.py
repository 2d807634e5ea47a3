"""Publishing one video's rows as Parquet files, atomically (stage 8, visitors → tables).

Each video owns one file per table, ``<output>/<table>/date=D/camera=C/<video_id>.parquet``; the
partition values are the folder names only, not columns of the file (``schemas.tables``). A
file is written under a temporary name in the same folder and renamed into place, so a reader
sees the old file or the new one, never half of one; a rerun replaces a video's rows as a whole.
The ``videos`` file is published last and is the video's commit record: readers (``schemas.views``)
ignore visitor and detection rows whose ``analysis_id`` has no ``videos`` row yet.
"""

from __future__ import annotations

import io
import uuid
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from common.paths import is_remote
from schemas.tables import TABLES

TEMP_SUFFIX = ".tmp"


def partition_dir(output: str, table: str, day: date, camera: str) -> str:
    return FileSystems.join(output, table, f"date={day.isoformat()}", f"camera={camera}")


def to_arrow(table: str, rows: list[dict]) -> pa.Table:
    """The rows as the table's schema; a row with a column too many or too few is a bug in its
    builder (``schemas.rows``), refused here rather than written as NULLs."""
    names = set(TABLES[table].names)
    for row in rows:
        if row.keys() != names:
            extra, missing = sorted(row.keys() - names), sorted(names - row.keys())
            raise ValueError(
                f"{table} row does not fit the schema: extra {extra}, missing {missing}"
            )
    _check_zones(table, rows)
    return pa.Table.from_pylist(rows, schema=TABLES[table])


def _check_zones(table: str, rows: list[dict]) -> None:
    """A UTC column takes only aware datetimes and a wall-clock column only naive ones: Arrow
    would store a naive value as if it were UTC, and an aware one as its UTC time, each silently
    hours off when a builder hands in the other kind."""
    for field in TABLES[table]:
        if not pa.types.is_timestamp(field.type):
            continue
        aware = field.type.tz is not None
        for row in rows:
            value = row[field.name]
            if isinstance(value, datetime) and (value.tzinfo is not None) != aware:
                kind = "a naive" if aware else "an aware"
                want = "UTC, with its zone" if aware else "naive site-local time"
                raise ValueError(f"{table}.{field.name} got {kind} datetime {value}: want {want}")


def publish(output: str, table: str, rows: list[dict], day: date, camera: str, name: str) -> str:
    """Write ``rows`` as ``<name>.parquet`` in the table's partition; returns the final path."""
    folder = partition_dir(output, table, day, camera)
    final = FileSystems.join(folder, f"{name}.parquet")
    temp = FileSystems.join(folder, f".{name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    buffer = io.BytesIO()
    pq.write_table(to_arrow(table, rows), buffer, compression="zstd")
    with FileSystems.create(temp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(buffer.getvalue())
    # Local renames replace atomically; object stores copy, so clear the way first there.
    if is_remote(final) and FileSystems.exists(final):
        FileSystems.delete([final])
    FileSystems.rename([temp], [final])
    return final


def remove_video(output: str, day: date, camera: str, name: str) -> None:
    """Delete a video's files from one partition (after it was republished in another)."""
    paths = [
        FileSystems.join(partition_dir(output, table, day, camera), f"{name}.parquet")
        for table in TABLES
    ]
    existing = [p for p in paths if FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)


def clear_temporaries(output: str) -> int:
    """Remove the half-written files a killed run left in a local output folder (readers never
    saw them); returns how many."""
    if is_remote(output):
        return 0
    leftovers = list(Path(output).glob(f"*/**/.*{TEMP_SUFFIX}"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)
