"""DuckDB views over an analysis output folder: the one way every reader sees the tables.

A video's ``videos`` row is its commit record: the pipeline writes it after the video's visitor
and detection files. The views therefore show visitor and detection rows only when a ``videos``
row with the same ``analysis_id`` exists, and show each video once, at its latest analysis. Rows
of a run killed half-way, or left behind by an older analysis of the same video, stay invisible.
"""

from pathlib import Path

import duckdb
import pyarrow as pa

from schemas import TABLES


def table_glob(output: str, table: str) -> str:
    return f"{str(output).rstrip('/')}/{table}/**/*.parquet"


def _has_files(output: str, table: str) -> bool:
    root = Path(output) / table
    return root.is_dir() and any(root.rglob("*.parquet"))


def _raw_relation(con: duckdb.DuckDBPyConnection, output: str, table: str) -> str:
    """A SQL expression for a table's raw rows; an empty typed table when nothing is written yet."""
    if _has_files(output, table):
        glob = table_glob(output, table).replace("'", "''")
        return f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    name = f"empty_{table}"
    con.register(name, pa.Table.from_batches([], schema=TABLES[table]))
    return name


def connect(output: str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A connection with views ``videos``, ``visitors`` and ``detections`` over ``output``."""
    con = con or duckdb.connect()
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
