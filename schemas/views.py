"""DuckDB views over an analysis output folder: the one way every reader sees the tables.

A video's ``videos`` row is its commit record: the pipeline writes it after the video's visitor
and detection files. The views therefore show visitor and detection rows only when a ``videos``
row with the same ``analysis_id`` exists, and show each video once, at its latest analysis. Rows
of a run killed half-way, or left behind by an older analysis of the same video, stay invisible.
"""

from pathlib import Path

import duckdb
import pyarrow as pa

from common.messages import first_line
from schemas.tables import KEY_COLUMNS, TABLES


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


def _raw_relation(con: duckdb.DuckDBPyConnection, output: str, table: str) -> str:
    """A SQL expression for a table's raw rows; an empty typed table when nothing is written yet."""
    if _has_files(output, table):
        glob = table_glob(output, table).replace("'", "''")
        _refuse_foreign_files(con, glob, table)
        return f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    name = f"empty_{table}"
    con.register(name, pa.Table.from_batches([], schema=TABLES[table]))
    return name


def _refuse_foreign_files(con: duckdb.DuckDBPyConnection, glob: str, table: str) -> None:
    """TablesError naming the first file under the table's folder that lacks a key column.
    Files are read by column name (union_by_name, so older files without a newer column still
    read), which would turn a foreign file beside ours into rows of NULLs in every count."""
    keys = ", ".join(f"'{c}'" for c in KEY_COLUMNS)
    row = con.execute(
        f"""
        SELECT file_name, list_sort(list(DISTINCT name) FILTER (WHERE name IN ({keys})))
        FROM parquet_schema('{glob}')
        GROUP BY file_name
        HAVING count(DISTINCT name) FILTER (WHERE name IN ({keys})) < {len(KEY_COLUMNS)}
        ORDER BY file_name
        LIMIT 1
        """
    ).fetchone()
    if row:
        missing = ", ".join(c for c in KEY_COLUMNS if c not in (row[1] or []))
        raise TablesError(
            f"{row[0]} is not a {table} file of this analysis (it lacks {missing}): "
            "move it out of the output folder"
        )


def connect(output: str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A connection with views ``videos``, ``visitors`` and ``detections`` over ``output``;
    TablesError when a file under it cannot be read."""
    try:
        return _create_views(output, con or duckdb.connect())
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
    return {
        "videos_ok": ok,
        "videos_failed": failed,
        "visitors": int(visitors),
        "video_seconds": float(video_s),
        "failed": [{"video": v, "error": e} for v, e in fetch(con, sql, [run_id])],
    }


def _create_views(output: str, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    columns = {t: ", ".join(f'"{f.name}"' for f in schema) for t, schema in TABLES.items()}
    con.execute(
        f"""
        CREATE OR REPLACE VIEW videos AS
        SELECT {columns["videos"]} FROM {_raw_relation(con, output, "videos")}
        QUALIFY row_number() OVER (PARTITION BY video_id ORDER BY processed_at DESC) = 1
        """
    )
    for table in ("visitors", "detections"):
        con.execute(
            f"""
            CREATE OR REPLACE VIEW {table} AS
            SELECT {", ".join(f"t.{c.strip()}" for c in columns[table].split(","))}
            FROM {_raw_relation(con, output, table)} AS t
            SEMI JOIN videos AS v USING (video_id, analysis_id)
            """
        )
    return con
