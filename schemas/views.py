"""DuckDB views over an analysis output folder: the one way every reader sees the tables.

A video's ``videos`` row is its commit record: the pipeline writes it after the video's visitor
and detection files. The views therefore show visitor and detection rows only when a ``videos``
row with the same ``analysis_id`` exists, and show each video once, at its latest analysis. Rows
of a run killed half-way, or left behind by an older analysis of the same video, stay invisible.

``date`` and ``camera`` come from the folder names with their types given (``schemas.tables``).
The views also read folders written before that layout, whose files repeat both columns and hold
``mtime``/``processed_at`` as naive UTC, mixed with new files: columns are matched by name, and
the two times are shown as TIMESTAMPTZ whatever a file holds.
"""

import re
from pathlib import Path

import duckdb
import pyarrow as pa

from common.messages import first_line
from schemas.tables import KEY_COLUMNS, PARTITIONING, TABLES, with_partitions


class TablesError(Exception):
    """The output's Parquet files cannot be read: a damaged, half-copied or foreign file."""


# What DuckDB raises for a file it cannot read as our Parquet: damaged (IO, invalid input) or
# foreign (other columns or types: binder, conversion, type mismatch). Other errors are bugs.
_UNREADABLE = (
    duckdb.IOException,
    duckdb.InvalidInputException,
    duckdb.BinderException,
    duckdb.ConversionException,
    duckdb.TypeMismatchException,
)


def fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    """A query's rows over the views; an unreadable file under the output raises TablesError
    with DuckDB's first line (which names the file)."""
    try:
        return con.execute(sql, params or []).fetchall()
    except _UNREADABLE as e:
        raise TablesError(first_line(e)) from None


def table_glob(output: str, table: str) -> str:
    return f"{str(output).rstrip('/')}/{table}/**/*.parquet"


def _has_files(output: str, table: str) -> bool:
    root = Path(output) / table
    return root.is_dir() and any(root.rglob("*.parquet"))


# The partition columns' DuckDB types: without them DuckDB guesses from the folder names, and a
# camera folder named ``1`` would read as a number.
_DUCKDB_TYPES = {pa.date32(): "DATE", pa.string(): "VARCHAR"}
_HIVE_TYPES = "{" + ", ".join(f"'{f.name}': {_DUCKDB_TYPES[f.type]}" for f in PARTITIONING) + "}"
# Where publish puts a file: directly in its date=/camera= folder.
_PARTITION_PATH = "/".join(f"{name}=[^/]+" for name in PARTITIONING.names) + "/[^/]+$"


def _raw_relation(con: duckdb.DuckDBPyConnection, output: str, table: str) -> str:
    """A SQL expression for a table's raw rows; an empty typed table when nothing is written yet."""
    if _has_files(output, table):
        glob = table_glob(output, table).replace("'", "''")
        _refuse_foreign_files(con, glob, table)
        return (
            f"read_parquet('{glob}', hive_partitioning = true, hive_types = {_HIVE_TYPES}, "
            "union_by_name = true)"
        )
    name = f"empty_{table}"
    con.register(name, pa.Table.from_batches([], schema=with_partitions(TABLES[table])))
    return name


def _refuse_foreign_files(con: duckdb.DuckDBPyConnection, glob: str, table: str) -> None:
    """TablesError naming the first file under the table's folder that lacks a key column or
    its date=/camera= folders. Files are read by column name (union_by_name, so older files
    without a newer column still read), which would turn a foreign file beside ours into rows of
    NULLs in every count."""
    keys = ", ".join(f"'{c}'" for c in KEY_COLUMNS)
    row = con.execute(
        f"""
        SELECT file_name, list_sort(list(DISTINCT name) FILTER (WHERE name IN ({keys})))
        FROM parquet_schema('{glob}')
        GROUP BY file_name
        HAVING count(DISTINCT name) FILTER (WHERE name IN ({keys})) < {len(KEY_COLUMNS)}
            OR NOT regexp_matches(file_name, '{_PARTITION_PATH}')
        ORDER BY file_name
        LIMIT 1
        """
    ).fetchone()
    if row:
        lacks = [c for c in KEY_COLUMNS if c not in (row[1] or [])]
        if not re.search(_PARTITION_PATH, row[0]):
            lacks.append("its " + "/".join(f"{n}=" for n in PARTITIONING.names) + " folders")
        raise TablesError(
            f"{row[0]} is not a {table} file of this analysis (it lacks {', '.join(lacks)}): "
            "move it out of the output folder"
        )


def connect(output: str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A connection with views ``videos``, ``visitors`` and ``detections`` over ``output``;
    TablesError when a file under it cannot be read.

    Sets the connection's TimeZone to UTC: DuckDB turns an older file's naive ``mtime`` and
    ``processed_at`` into instants in that zone, and they are UTC (a local zone would shift them
    by its offset, and the manifest would see every old video as changed). Leave it so on this
    connection; TIMESTAMPTZ values come back as UTC-aware datetimes."""
    con = con or duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        return _create_views(output, con)
    except _UNREADABLE as e:
        raise TablesError(first_line(e)) from None


def run_counts(output: str, run_id: str) -> dict:
    """What one run committed: videos ok and failed (with their reasons), visitors, seconds of
    video analysed."""
    con = connect(output)
    ok, failed, visitors, video_s = fetch(
        con,
        "SELECT count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'failed'), "
        "coalesce(sum(visitors), 0), coalesce(sum(duration_s) FILTER (status = 'ok'), 0) "
        "FROM videos WHERE run_id = ?",
        [run_id],
    )[0]
    sql = "SELECT video, error FROM videos WHERE run_id = ? AND status = 'failed' ORDER BY 1"
    from_mtime, cameras = fetch(
        con,
        "SELECT count(*) FILTER (start_time_source = 'mtime'), list(DISTINCT camera) "
        "FROM videos WHERE run_id = ?",
        [run_id],
    )[0]
    return {
        "videos_ok": ok,
        "videos_failed": failed,
        "visitors": int(visitors),
        "video_seconds": float(video_s),
        "failed": [{"video": v, "error": e} for v, e in fetch(con, sql, [run_id])],
        "start_times_from_mtime": from_mtime,
        "cameras": sorted(cameras or []),
    }


def _columns(con: duckdb.DuckDBPyConnection, output: str, table: str, alias: str) -> str:
    """The view's select list: the table's columns and the folders', in schema order; the UTC
    columns as TIMESTAMPTZ, which makes a folder of older files alone read as a new one does;
    a column no file has yet (files written before it was added) as a typed NULL."""
    schema = with_partitions(TABLES[table])
    types = con.from_arrow(pa.Table.from_batches([], schema=schema)).dtypes
    present = _file_columns(con, output, table)
    columns = []
    for field, duck_type in zip(schema, types, strict=True):
        name = f'{alias}."{field.name}"'
        if present is not None and field.name not in present | set(PARTITIONING.names):
            name = f'CAST(NULL AS {duck_type}) AS "{field.name}"'
        elif pa.types.is_timestamp(field.type) and field.type.tz is not None:
            name = f'CAST({name} AS TIMESTAMPTZ) AS "{field.name}"'
        columns.append(name)
    return ", ".join(columns)


def _file_columns(con: duckdb.DuckDBPyConnection, output: str, table: str) -> set[str] | None:
    """The columns any of the table's files has; None when it has no files yet."""
    if not _has_files(output, table):
        return None
    glob = table_glob(output, table).replace("'", "''")
    rows = con.execute(f"SELECT DISTINCT name FROM parquet_schema('{glob}')").fetchall()
    return {name for (name,) in rows}


def _create_views(output: str, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    con.execute(
        f"""
        CREATE OR REPLACE VIEW videos AS
        SELECT {_columns(con, output, "videos", "t")}
        FROM {_raw_relation(con, output, "videos")} AS t
        QUALIFY row_number() OVER (PARTITION BY t.video_id ORDER BY t.processed_at DESC) = 1
        """
    )
    for table in ("visitors", "detections"):
        con.execute(
            f"""
            CREATE OR REPLACE VIEW {table} AS
            SELECT {_columns(con, output, table, "t")}
            FROM {_raw_relation(con, output, table)} AS t
            SEMI JOIN videos AS v USING (video_id, analysis_id)
            """
        )
    return con
