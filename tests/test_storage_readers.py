"""The output folders as any tool reads them (schemas/tables.py, rows.py, publish.py, views.py).

An output is written through the row builders and ``schemas.publish`` with two days and two
cameras, one of them named ``1``: DuckDB, pyarrow, pandas and Polars each read every table folder,
plainly and with the exact types that schemas/tables.py documents. A folder written before the
standard Hive layout (files repeating ``date``/``camera``, naive UTC times) mixed with new files
reads through ``schemas.views`` as one.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.visitors import Visitor
from schemas import rows
from schemas.manifest import read_manifest
from schemas.publish import partition_dir, publish, to_arrow
from schemas.tables import PARTITIONING, TABLES, with_partitions
from schemas.views import TablesError, connect

D1, D2 = date(2024, 5, 1), date(2024, 5, 2)
# video id, day, camera, visitors; camera "1" on both days, "lobby" on the first
VIDEOS = [("v1", D1, "1", 2), ("v2", D1, "lobby", 1), ("v3", D2, "1", 3)]
MTIME = 1714550400.25  # 2024-05-01 08:00:00.25 UTC, exact in binary and in microseconds
# (date, camera) of every row of each table, sorted
EXPECTED = {
    "videos": [(D1, "1"), (D1, "lobby"), (D2, "1")],
    "visitors": [(D1, "1")] * 2 + [(D1, "lobby")] + [(D2, "1")] * 3,
    "detections": [(D1, "1")] * 2 + [(D1, "lobby")] + [(D2, "1")] * 3,
}
EXACT_DUCKDB = "hive_partitioning = true, hive_types = {'date': DATE, 'camera': VARCHAR}"
HIVE = ds.partitioning(PARTITIONING, flavor="hive")
POLARS_HIVE = {"date": pl.Date, "camera": pl.String}


def _tables(vid: str, day: date, camera: str, n: int, analysis: str = "") -> dict[str, list[dict]]:
    """One video's rows, built the way pipelines/steps.py builds them."""
    key = rows.VideoKey(vid, analysis or f"a-{vid}", f"/videos/{camera}/{vid}.mp4", camera, day)
    start = datetime.combine(day, time(9))  # the site's wall clock, naive
    visitors = [
        Visitor(i, 10.0 * i, 10.0 * i + 4, 4.0, 5, 30.0 + i, 2.0, "30-39", "male", 0.1, 60.0, 0.7)
        for i in range(n)
    ]
    # every other visitor faced the camera 2.4 s, a watcher
    visitors = [
        replace(v, attention_s=2.4 * (v.track_id % 2), watcher=v.track_id % 2 == 1)
        for v in visitors
    ]
    tracks = [
        SimpleNamespace(track_id=v.track_id, observations=[_face(v.start_s)]) for v in visitors
    ]
    record = SimpleNamespace(
        start_time=start,
        start_time_source="filename",
        video=SimpleNamespace(size_bytes=1000, mtime=MTIME),
        fingerprint=f"fp-{vid}",
        stream=None,
        frames_decoded=50,
        frames_skipped=0,
        frames_analysed=10,
        faces_detected=n,
        status="ok",
        error=None,
    )
    video = rows.video_row(
        key,
        record,
        n,
        n,
        watchers=n // 2,
        run_id="r1",
        model_version="m1",
        detector_version="d1",
        processing_s=1.0,
    )
    return {
        "videos": [video],
        "visitors": rows.visitor_rows(key, visitors, start),
        "detections": rows.detection_rows(key, start, tracks, {v.track_id for v in visitors}),
    }


def _face(t_s: float) -> SimpleNamespace:
    return SimpleNamespace(
        frame_index=int(t_s * 5),
        t_s=t_s,
        box=(1.0, 2.0, 61.0, 62.0),
        score=0.9,
        landmarks=[[float(i), float(i)] for i in range(5)],
        size=60.0,
        frontalness=0.8,
        age=30.0,
        gender_prob=0.1,
        extra={},
        yaw=-12.5,
        pitch=4.0,
    )


def _publish(output: Path, videos=VIDEOS) -> Path:
    for vid, day, camera, n in videos:
        # videos last, as the pipeline commits a video
        for table, table_rows in reversed(_tables(vid, day, camera, n).items()):
            publish(str(output), table, table_rows, day, camera, vid)
    return output


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    return _publish(tmp_path_factory.mktemp("storage") / "output")


@pytest.fixture(scope="module")
def numeric(output, tmp_path_factory) -> Path:
    """The output without camera 'lobby': every camera folder is named by a number."""
    copy = tmp_path_factory.mktemp("numeric") / "output"
    shutil.copytree(output, copy, ignore=shutil.ignore_patterns("camera=lobby"))
    return copy


def _pairs(dates, cameras) -> list[tuple]:
    return sorted(zip(dates, cameras, strict=True))


# -- what is written --------------------------------------------------------------------------


def test_rows_hold_utc_instants_and_no_partition_columns():
    made = _tables("v1", D1, "1", 1)
    video = made["videos"][0]
    assert video["mtime"] == datetime(2024, 5, 1, 8, 0, 0, 250000, tzinfo=UTC)
    assert video["processed_at"].utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - video["processed_at"]) < timedelta(minutes=1)
    assert made["visitors"][0]["start_time"] == datetime(2024, 5, 1, 9)  # wall clock, naive
    for table, table_rows in made.items():
        assert {"date", "camera"}.isdisjoint(table_rows[0]), table
        assert to_arrow(table, table_rows).schema == TABLES[table]


def test_publish_refuses_a_time_of_the_wrong_kind_and_a_partition_column():
    video = _tables("v1", D1, "1", 1)["videos"][0]
    naive = video | {"mtime": datetime(2024, 5, 1, 8)}
    with pytest.raises(ValueError, match=r"videos.mtime got a naive datetime .*want UTC"):
        to_arrow("videos", [naive])
    visitor = _tables("v1", D1, "1", 1)["visitors"][0]
    aware = visitor | {"start_time": datetime(2024, 5, 1, 9, tzinfo=UTC)}
    with pytest.raises(ValueError, match=r"visitors.start_time got an aware .*site-local"):
        to_arrow("visitors", [aware])
    with pytest.raises(ValueError, match=r"extra \['camera', 'date'\], missing \[\]"):
        to_arrow("visitors", [visitor | {"date": D1, "camera": "1"}])


def test_files_hold_the_schema_and_the_folders_the_partition(output):
    for table, schema in TABLES.items():
        files = sorted((output / table).rglob("*.parquet"))
        assert [f.relative_to(output / table).parent.as_posix() for f in files] == [
            f"date={d}/camera={c}" for d, c in sorted(set(EXPECTED[table]))
        ]
        for f in files:
            assert pq.read_schema(f).remove_metadata() == schema, f
    mtime = TABLES["videos"].field("mtime").type
    assert mtime == pa.timestamp("us", tz="UTC")


# -- each reader, plainly and with the exact types --------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_duckdb(output, numeric, table):
    glob = f"{output}/{table}/**/*.parquet"
    rel = duckdb.sql(f"SELECT date, camera FROM read_parquet('{glob}', {EXACT_DUCKDB})")
    assert rel.types == ["DATE", "VARCHAR"]
    assert sorted(rel.fetchall()) == EXPECTED[table]
    assert duckdb.sql(f"SELECT date, camera FROM '{glob}'").types == ["DATE", "VARCHAR"]
    plain = duckdb.sql(f"SELECT date, camera FROM '{numeric}/{table}/**/*.parquet'")
    assert plain.types == ["DATE", "BIGINT"]  # camera 1 as a number unless typed
    exact = f"SELECT camera FROM read_parquet('{numeric}/{table}/**/*.parquet', {EXACT_DUCKDB})"
    assert duckdb.sql(exact).fetchall() == [("1",)] * sum(c == "1" for _, c in EXPECTED[table])


@pytest.mark.parametrize("table", TABLES)
def test_pyarrow_dataset(output, numeric, table):
    got = ds.dataset(output / table, partitioning=HIVE).to_table()
    assert got.schema == pa.unify_schemas([TABLES[table], PARTITIONING])
    assert _pairs(got["date"].to_pylist(), got["camera"].to_pylist()) == EXPECTED[table]
    plain = ds.dataset(output / table, partitioning="hive").schema
    assert (plain.field("date").type, plain.field("camera").type) == (pa.string(), pa.string())
    plain = ds.dataset(numeric / table, partitioning="hive").schema
    assert plain.field("camera").type == pa.int32()


@pytest.mark.parametrize("table", TABLES)
def test_pandas(output, numeric, table):
    got = pd.read_parquet(output / table, partitioning=HIVE)
    assert _pairs(got["date"], got["camera"]) == EXPECTED[table]
    assert got["date"].dtype == object and type(got["date"].iloc[0]) is date
    assert pd.api.types.is_string_dtype(got["camera"])
    arrow = pd.read_parquet(output / table, partitioning=HIVE, dtype_backend="pyarrow")
    assert (str(arrow["date"].dtype), str(arrow["camera"].dtype)) == (
        "date32[day][pyarrow]",
        "string[pyarrow]",
    )
    plain = pd.read_parquet(output / table)
    assert plain["date"].dtype == "category" and plain["date"].cat.categories.tolist() == [
        "2024-05-01",
        "2024-05-02",
    ]
    assert plain["camera"].cat.categories.tolist() == ["1", "lobby"]
    assert pd.read_parquet(numeric / table)["camera"].cat.categories.tolist() == [1]
    if table == "videos":
        assert str(got["mtime"].dtype) == "datetime64[us, UTC]"
        assert got["mtime"].iloc[0] == pd.Timestamp(MTIME, unit="s", tz="UTC")
        assert str(got["start_time"].dtype) == "datetime64[us]"


@pytest.mark.parametrize("table", TABLES)
def test_polars(output, numeric, table):
    got = pl.read_parquet(output / table, hive_schema=POLARS_HIVE)
    assert (got.schema["date"], got.schema["camera"]) == (pl.Date, pl.String)
    assert _pairs(got["date"], got["camera"]) == EXPECTED[table]
    plain = pl.read_parquet(output / table).schema
    assert (plain["date"], plain["camera"]) == (pl.Date, pl.String)
    assert pl.read_parquet(numeric / table).schema["camera"] == pl.Int64
    if table == "videos":
        assert got.schema["mtime"] == pl.Datetime("us", "UTC")
        assert got.schema["start_time"] == pl.Datetime("us")


def test_pandas_snippet_of_the_readme_counts_what_the_views_count(output):
    """The README's pandas read: each video's latest analysis and the visitors it committed."""
    hive = ds.partitioning(
        pa.schema([("date", pa.date32()), ("camera", pa.string())]), flavor="hive"
    )
    videos = pd.read_parquet(output / "videos", partitioning=hive)
    visitors = pd.read_parquet(output / "visitors", partitioning=hive)
    latest = videos.sort_values("processed_at").drop_duplicates("video_id", keep="last")
    visitors = visitors.merge(latest[["video_id", "analysis_id"]], on=["video_id", "analysis_id"])
    views = connect(str(output)).execute("SELECT date, camera, track_id FROM visitors").fetchall()
    got = visitors[["date", "camera", "track_id"]].itertuples(index=False, name=None)
    assert sorted(got) == sorted(views) and len(views) == 6


# -- folders written before this layout, mixed with new files ---------------------------------

PROCESSED = datetime(2024, 5, 3, 2, 0, tzinfo=UTC)


def _old_file(output: Path, table: str, table_rows: list[dict], day: date, camera: str, vid: str):
    """Write rows as the code before this layout did: ``date`` and ``camera`` in the file too,
    ``mtime`` and ``processed_at`` as naive UTC."""
    schema = pa.schema(
        f.with_type(pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f
        for f in with_partitions(TABLES[table])
    )
    old = [
        {k: v.replace(tzinfo=None) if getattr(v, "tzinfo", None) else v for k, v in r.items()}
        | {"date": day, "camera": camera}
        for r in table_rows
    ]
    folder = Path(partition_dir(str(output), table, day, camera))
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(old, schema=schema), folder / f"{vid}.parquet")


def _video(vid, day, camera, n, processed_at, analysis="", old=False, output=None):
    made = _tables(vid, day, camera, n, analysis)
    made["videos"][0]["processed_at"] = processed_at
    for table, table_rows in reversed(made.items()):
        if old:
            _old_file(output, table, table_rows, day, camera, vid)
        else:
            publish(str(output), table, table_rows, day, camera, vid)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, Path]:
    """The same analyses twice: all new files, and a last night's folder holding v1 and a stale
    analysis of v3 (before it moved to the 2nd) as old files, next to tonight's new files. The
    stale one is an hour older: read as a New York time it would look three hours newer."""
    new, mix = (tmp_path_factory.mktemp(n) / "output" for n in ("new", "mixed"))
    hour = timedelta(hours=1)
    for output in (new, mix):
        _video("v1", D1, "1", 2, PROCESSED, old=output == mix, output=output)
        _video("v2", D1, "lobby", 1, PROCESSED + hour, output=output)
        _video("v3", D2, "1", 3, PROCESSED + 2 * hour, output=output)
    _video("v3", D1, "1", 5, PROCESSED + hour, analysis="a-v3-old", old=True, output=mix)
    return new, mix


def _everything(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def test_views_read_old_and_new_files_mixed_as_one(mixed):
    new, mix = mixed
    assert len(list(mix.rglob("*.parquet"))) == len(list(new.rglob("*.parquet"))) + 3
    new_york = duckdb.connect()
    new_york.execute("SET TimeZone = 'America/New_York'")  # a reader's own session zone
    got = _everything(connect(str(mix), new_york))
    assert got == _everything(connect(str(new)))
    videos = connect(str(mix)).execute(
        "SELECT video_id, analysis_id, date, camera, mtime, processed_at FROM videos ORDER BY 1"
    )
    mtime = datetime.fromtimestamp(MTIME, UTC)
    assert videos.fetchall() == [
        ("v1", "a-v1", D1, "1", mtime, PROCESSED),
        ("v2", "a-v2", D1, "lobby", mtime, PROCESSED + timedelta(hours=1)),
        ("v3", "a-v3", D2, "1", mtime, PROCESSED + timedelta(hours=2)),
    ]
    assert [len(got["visitors"]), len(got["detections"])] == [6, 6]  # not the stale 5


def test_views_give_one_type_per_column_whatever_the_files(mixed, tmp_path):
    new, mix = mixed
    old = tmp_path / "old"
    _video("v1", D1, "1", 2, PROCESSED, old=True, output=old)
    (tmp_path / "empty").mkdir()

    def types(output: Path) -> list[tuple]:
        con = connect(str(output))
        return [con.execute(f"DESCRIBE {t}").fetchall() for t in TABLES]

    expected = types(new)
    assert types(mix) == types(old) == expected
    # An empty output's detections.landmarks is FLOAT[10] (Arrow's fixed size), files' FLOAT[]
    assert types(tmp_path / "empty")[:2] == expected[:2]
    described = {name: kind for name, kind, *_ in expected[0]}
    assert [described[c] for c in ("date", "camera", "mtime", "processed_at", "start_time")] == [
        "DATE",
        "VARCHAR",
        "TIMESTAMP WITH TIME ZONE",
        "TIMESTAMP WITH TIME ZONE",
        "TIMESTAMP",
    ]
    assert [name for name, *_ in expected[1]][:5] == [
        "video_id",
        "analysis_id",
        "video",
        "camera",
        "date",
    ]


def test_manifest_reads_old_and_new_mtimes_alike(mixed):
    _, mix = mixed
    manifest = read_manifest(str(mix))
    assert {path: (e.mtime, e.date, e.camera) for path, e in manifest.items()} == {
        "/videos/1/v1.mp4": (MTIME, D1, "1"),
        "/videos/lobby/v2.mp4": (MTIME, D1, "lobby"),
        "/videos/1/v3.mp4": (MTIME, D2, "1"),
    }


def test_foreign_files_are_refused_with_one_line(output, tmp_path):
    copy = tmp_path / "output"
    shutil.copytree(output, copy)
    ours = next((copy / "videos").rglob("*.parquet"))
    stray = copy / "videos" / "stray.parquet"
    shutil.copy(ours, stray)  # our columns, but no date=/camera= folders
    with pytest.raises(TablesError) as refused:
        connect(str(copy))
    assert str(refused.value) == (
        f"{stray} is not a videos file of this analysis (it lacks its date=/camera= folders): "
        "move it out of the output folder"
    )
    stray.unlink()
    foreign = ours.with_name("foreign.parquet")
    pq.write_table(pa.table({"video_id": ["x"], "a": [1]}), foreign)
    with pytest.raises(
        TablesError,
        match=r"foreign.parquet is not a videos file of this anal"
        r"ysis \(it lacks analysis_id, video\): move it out",
    ):
        connect(str(copy))


def test_views_open_files_written_before_a_column_was_added(tmp_path):
    """Outputs written before the mask and emotion columns still open: those columns read as
    typed NULLs, and reports over them count nothing rather than fail."""
    rows = _tables("v1", date(2026, 11, 22), "lobby", 2)
    newer = ("mask", "mask_score", "emotion", "emotion_scores", "happy_share")
    old = pa.schema([f for f in TABLES["visitors"] if f.name not in newer])
    folder = tmp_path / "visitors" / "date=2026-11-22" / "camera=lobby"
    folder.mkdir(parents=True)
    visitors = [{k: v for k, v in r.items() if k in old.names} for r in rows["visitors"]]
    pq.write_table(pa.Table.from_pylist(visitors, schema=old), folder / "v1.parquet")
    publish(str(tmp_path), "videos", rows["videos"], date(2026, 11, 22), "lobby", "v1")
    con = connect(str(tmp_path))
    got = con.execute("SELECT count(*), count(mask), count(emotion_scores) FROM visitors")
    assert got.fetchall() == [(2, 0, 0)]
    kinds = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE visitors)").fetchall())
    assert kinds["mask"] == "VARCHAR" and kinds["emotion_scores"].startswith("STRUCT(angry FLOAT")


def test_views_open_files_written_before_attention_was_read(tmp_path):
    """Files written before head pose and attention lack videos.watchers and passers_by,
    visitors.attention_s and watcher, detections.yaw and pitch: beside newer files, those
    columns read as typed NULLs for the old video's rows and as written for the new one's."""
    newer = {
        "videos": ("watchers", "passers_by"),
        "visitors": ("attention_s", "watcher"),
        "detections": ("yaw", "pitch"),
    }
    day = date(2026, 11, 22)
    old = _tables("v1", day, "lobby", 2)
    for table in ("detections", "visitors", "videos"):  # the videos file last, as committed
        schema = pa.schema([f for f in TABLES[table] if f.name not in newer[table]])
        folder = tmp_path / table / "date=2026-11-22" / "camera=lobby"
        folder.mkdir(parents=True, exist_ok=True)
        kept = [{k: v for k, v in r.items() if k in schema.names} for r in old[table]]
        pq.write_table(pa.Table.from_pylist(kept, schema=schema), folder / "v1.parquet")
    con = connect(str(tmp_path))
    kinds = {
        name: kind
        for table in newer
        for name, kind, *_ in con.execute(f"DESCRIBE {table}").fetchall()
        if name in newer[table]
    }
    assert kinds == {
        "watchers": "BIGINT",
        "passers_by": "BIGINT",
        "attention_s": "DOUBLE",
        "watcher": "BOOLEAN",
        "yaw": "FLOAT",
        "pitch": "FLOAT",
    }
    counts = "SELECT count(*), count({0}), count({1}) FROM {2}"
    for table, (a, b) in newer.items():
        assert con.execute(counts.format(a, b, table)).fetchall() == [(len(old[table]), 0, 0)]
    for table, table_rows in reversed(_tables("v2", day, "lobby", 3).items()):
        publish(str(tmp_path), table, table_rows, day, "lobby", "v2")
    con = connect(str(tmp_path))
    got = con.execute("SELECT video_id, watchers, passers_by FROM videos ORDER BY 1").fetchall()
    assert got == [("v1", None, None), ("v2", 1, 2)]
    got = con.execute(
        "SELECT video_id, track_id, attention_s, watcher FROM visitors ORDER BY 1, 2"
    ).fetchall()
    assert got == [
        ("v1", 0, None, None),
        ("v1", 1, None, None),
        ("v2", 0, 0.0, False),
        ("v2", 1, 2.4, True),
        ("v2", 2, 0.0, False),
    ]
    got = con.execute("SELECT video_id, yaw, pitch FROM detections ORDER BY 1").fetchall()
    assert got == [("v1", None, None)] * 2 + [("v2", -12.5, 4.0)] * 3
