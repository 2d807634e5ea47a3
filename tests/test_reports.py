"""Reports (reports/sql, reports/catalog.py, reports/formats.py, jobs/report.py) and scheduling
files.

The data is a small hand-made output folder with known values: two days, two cameras, one
failed video, and one visitor row whose analysis has no ``videos`` row (uncommitted: invisible).
"""

from __future__ import annotations

import base64
import configparser
import csv
import io
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import report as report_job
from pipelines.settings import load_settings
from reports import catalog, formats
from schemas.bands import labels_of_edges
from schemas.model_file import CLASS_NAMES
from schemas.publish import publish
from schemas.views import connect

ROOT = Path(__file__).resolve().parents[1]
# The bands jobs.report passes by default: those of the analysis settings (config/analyze.yaml).
DEFAULT_AGE_BANDS = labels_of_edges(load_settings().visitors.age_bands)
SITE = {"age_bands": list(DEFAULT_AGE_BANDS)}
D1, D2 = date(2024, 5, 1), date(2024, 5, 2)

# video_id, date, camera, status, error, frames decoded/analysed, visitors kept/dropped
VIDEO_ROWS = [
    ("v1", D1, "cam1", "ok", None, 1500, 300, 3, 1),
    ("v2", D1, "cam2", "ok", None, 1000, 200, 2, 0),
    ("v3", D2, "cam1", "ok", None, 900, 180, 2, 2),
    ("v4", D2, "cam2", "failed", "truncated file: moov atom not found", 0, 0, 0, 0),
]
# video_id, age, gender, dwell_s, start clock time
VISITOR_ROWS = [
    ("v1", 5.0, "female", 3.0, "09:10"),
    ("v1", 25.0, "male", 12.0, "09:40"),
    ("v1", 34.5, "female", 45.0, "10:05"),
    ("v2", 29.9, "male", 7.0, "14:00"),
    ("v2", 61.0, "female", 200.0, "14:30"),
    ("v3", 59.99, "male", 1.0, "09:00"),
    ("v3", 60.0, "male", 700.0, "11:15"),
]
# Mask status and dominant emotion (with the share of frames read happy) of each visitor above.
ATTRIBUTES = [
    ("with_mask", "happy", 0.8),
    ("without_mask", "neutral", 0.1),
    ("with_incorrect_mask", "sad", 0.0),
    ("without_mask", "happy", 0.6),
    ("with_mask", "angry", 0.0),
    ("without_mask", "surprise", 0.2),
    (None, None, None),  # analysed by a model without the mask and emotion heads
]
# Attention time (s) and watcher of each visitor above; None: analysed before attention was read.
ATTENTION = [(2.4, True), (0.4, False), (30.0, True), (0.0, False), (150.0, True), (None, None),
             (1.0, True)]  # fmt: skip
# Watchers and passers-by per video (v3's second visitor was not read; v4 failed).
VIDEO_ATTENTION = {"v1": (2, 1), "v2": (1, 1), "v3": (1, 0), "v4": (0, 0)}
# A visitor of an analysis that never committed (no videos row): no report may count it.
ORPHAN = ("v9", 45.0, "female", 1000.0, "12:00")


def _band(age: float) -> str:
    return "60+" if age >= 60 else f"{int(age // 10) * 10}-{int(age // 10) * 10 + 9}"


def _write(output: Path, table: str, rows: list[dict], name: str) -> None:
    """Publish rows the way the pipeline does (one file per video in its date/camera partition,
    whose folder names hold those two, not the file)."""
    files = [{k: v for k, v in row.items() if k not in ("date", "camera")} for row in rows]
    publish(str(output), table, files, rows[0]["date"], rows[0]["camera"], name)


def _video(vid, day, camera, status, error, decoded, analysed, kept, dropped) -> dict:
    start = datetime.combine(day, datetime.min.time()) + timedelta(hours=8)
    return {
        "video_id": vid,
        "analysis_id": f"a-{vid}",
        "video": f"/videos/{camera}/{day:%Y%m%d}_080000.mp4",
        "camera": camera,
        "date": day,
        "run_id": "run-1",
        "start_time": start,
        "start_time_source": "filename",
        "size_bytes": 1000,
        "mtime": start.replace(tzinfo=UTC),
        "fingerprint": f"fp-{vid}",
        "duration_s": 3600.0 if status == "ok" else None,
        "fps": 5.0,
        "width": 1280,
        "height": 720,
        "rotation": 0,
        "codec": "h264",
        "frames_decoded": decoded,
        "frames_skipped": 0,
        "frames_analysed": analysed,
        "faces_detected": 10 * kept,
        "tracks": kept + dropped,
        "visitors": kept,
        "visitors_dropped": dropped,
        "watchers": VIDEO_ATTENTION[vid][0],
        "passers_by": VIDEO_ATTENTION[vid][1],
        "status": status,
        "error": error,
        "processing_s": 60.0,
        "processed_at": start.replace(tzinfo=UTC) + timedelta(days=1),
        "model_version": "m1",
        "detector_version": "d1",
    }


def _visitor(
    i, vid, day, camera, age, gender, dwell, clock, analysis_id=None, attributes=(None,) * 3,
    attention=(None, None),
) -> dict:  # fmt: skip
    hh, mm = (int(v) for v in clock.split(":"))
    start = datetime.combine(day, datetime.min.time()) + timedelta(hours=hh, minutes=mm)
    return {
        "video_id": vid,
        "analysis_id": analysis_id or f"a-{vid}",
        "video": f"/videos/{camera}/{day:%Y%m%d}_080000.mp4",
        "camera": camera,
        "date": day,
        "track_id": i,
        "start_s": 0.0,
        "end_s": dwell,
        "start_time": start,
        "end_time": start + timedelta(seconds=dwell),
        "dwell_s": dwell,
        "frames": 10,
        "age": age,
        "age_std": 3.0,
        "age_band": _band(age),
        "gender": gender,
        "gender_score": 0.9 if gender == "male" else 0.1,
        "face_px": 80.0,
        "quality": 0.8,
        **_attribute_columns(*attributes),
        "attention_s": attention[0],
        "watcher": attention[1],
        "fragments": 1,
        "person_id": f"p{i % 3}",  # as identity.enabled writes them: returns on each day
    }


def _attribute_columns(mask, emotion, happy_share) -> dict:
    scores = None
    if emotion is not None:
        scores = {e: (0.7 if e == emotion else 0.05) for e in CLASS_NAMES["emotion"]}
    return {
        "mask": mask,
        "mask_score": None if mask is None else 0.9,
        "emotion": emotion,
        "emotion_scores": scores,
        "happy_share": happy_share,
    }


def make_output(output: Path) -> Path:
    where = {v[0]: (v[1], v[2]) for v in VIDEO_ROWS}
    for row in VIDEO_ROWS:
        _write(output, "videos", [_video(*row)], row[0])
        readings = zip(VISITOR_ROWS, ATTRIBUTES, ATTENTION, strict=True)
        people = [(r, a, w) for r, a, w in readings if r[0] == row[0]]
        if people:
            rows = [
                _visitor(i, vid, *where[vid], *rest, attributes=attributes, attention=attention)
                for i, ((vid, *rest), attributes, attention) in enumerate(people)
            ]
            _write(output, "visitors", rows, row[0])
    vid, *rest = ORPHAN
    orphan = _visitor(0, vid, D1, "cam1", *rest, "a-uncommitted", attention=(999.0, True))
    _write(output, "visitors", [orphan], vid)
    return output


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    return make_output(tmp_path_factory.mktemp("reports") / "output")


@pytest.fixture(scope="module")
def results(output):
    return {
        name: table.to_pylist()
        for name, (_, table) in catalog.run_reports(output, params=SITE).items()
    }


def rows(table) -> list[dict]:
    return table.to_pylist()


def run_one(output, name, **params):
    con = connect(str(output))
    return rows(catalog.run_report(con, catalog.select_reports([name])[0], SITE | params))


def cli(*args: str) -> int:
    return report_job.main([str(a) for a in args])


# -- the reports' values --------------------------------------------------------------------


def test_reports_are_listed_with_titles_and_in_order():
    reports = catalog.list_reports()
    names = [r.name for r in reports]
    assert names == [
        "summary",
        "daily_summary",
        "cameras",
        "visitors_by_hour",
        "age_gender",
        "age_gender_broad",
        "mask_by_group",
        "mood_by_hour",
        "mood_by_age_band",
        "attention_by_hour",
        "attention_by_age_gender",
        "unique_people",
        "dwell_distribution",
        "attention_distribution",
        "data_quality",
        "failed_videos",
    ]
    for r in reports:
        assert r.title and r.description, r.name
        assert {"from", "to", "camera"} <= set(r.params), r.name


def test_daily_summary(results):
    assert results["daily_summary"] == [
        {
            "date": D1,
            "visitors": 5,
            "median_dwell_s": 12.0,  # of 3, 7, 12, 45, 200
            "mean_dwell_s": 53.4,
            "videos_processed": 2,
            "videos_failed": 0,
        },
        {
            "date": D2,
            "visitors": 2,
            "median_dwell_s": 350.5,  # of 1, 700
            "mean_dwell_s": 350.5,
            "videos_processed": 2,
            "videos_failed": 1,
        },
    ]


def test_uncommitted_visitor_is_invisible(output, results):
    raw = sum(pq.read_metadata(p).num_rows for p in (output / "visitors").rglob("*.parquet"))
    assert raw == len(VISITOR_ROWS) + 1
    assert sum(r["visitors"] for r in results["daily_summary"]) == len(VISITOR_ROWS)
    assert sum(r["visitors"] for r in results["age_gender"]) == len(VISITOR_ROWS)
    assert sum(r["visitors"] for r in results["dwell_distribution"]) == len(VISITOR_ROWS)
    assert sum(r["visitors"] for r in results["visitors_by_hour"]) == len(VISITOR_ROWS)
    read = sum(a is not None for a, _ in ATTENTION)  # the orphan was read: 999 s, a watcher
    assert sum(r["visitors"] for r in results["attention_by_hour"]) == read
    assert sum(r["visitors"] for r in results["attention_distribution"]) == read
    assert sum(r["watchers"] for r in results["attention_by_age_gender"]) == 4
    assert not any(r["hour"] == 12 for r in results["visitors_by_hour"])  # the orphan's hour


def test_visitors_by_hour(results):
    got = [(r["camera"], r["hour"], r["visitors"]) for r in results["visitors_by_hour"]]
    assert got == [("cam1", 9, 3), ("cam1", 10, 1), ("cam1", 11, 1), ("cam2", 14, 2)]


def test_age_gender_default_bands(results):
    got = [(r["band"], r["female"], r["male"], r["visitors"]) for r in results["age_gender"]]
    assert got == [
        ("0-9", 1, 0, 1),
        ("10-19", 0, 0, 0),
        ("20-29", 0, 2, 2),  # 25.0 and 29.9
        ("30-39", 1, 0, 1),
        ("40-49", 0, 0, 0),
        ("50-59", 0, 1, 1),  # 59.99
        ("60+", 1, 1, 2),  # 60.0 and 61.0
    ]
    assert [r["share_pct"] for r in results["age_gender"]] == [14.3, 0, 28.6, 14.3, 0, 14.3, 28.6]


def test_report_bands_default_to_the_visitors_table_bands():
    """One home for the bands: jobs.report's default follows config/analyze.yaml's edges, the
    same labels pipelines.visitors writes into visitors.age_band (schemas.bands)."""
    assert labels_of_edges((10, 20, 30, 40, 50, 60)) == DEFAULT_AGE_BANDS
    assert labels_of_edges((18, 35, 55)) == ("0-17", "18-34", "35-54", "55+")


def test_age_gender_broad_bands(results):
    got = [(r["band"], r["female"], r["male"]) for r in results["age_gender_broad"]]
    assert got == [("<30", 1, 2), ("30-59", 1, 1), ("60+", 1, 1)]


def test_age_bands_are_computed_from_age_and_configurable(output):
    got = run_one(output, "age_gender", age_bands=["<18", "18-64", "65+"])
    assert [(r["band"], r["visitors"]) for r in got] == [("<18", 1), ("18-64", 6), ("65+", 0)]
    got = run_one(output, "age_gender_broad", broad_age_bands=["<35", "35+"])
    assert [(r["band"], r["female"], r["male"]) for r in got] == [("<35", 2, 2), ("35+", 1, 2)]


def test_dwell_distribution(output, results):
    got = [(r["bucket"], r["visitors"]) for r in results["dwell_distribution"]]
    assert got == [
        ("0-5 s", 2),
        ("5-10 s", 1),
        ("10-30 s", 1),
        ("30-60 s", 1),
        ("60-120 s", 0),
        ("120-300 s", 1),
        ("300-600 s", 0),
        ("600+ s", 1),
    ]
    got = run_one(output, "dwell_distribution", dwell_buckets=[0, 10, 100.5])
    assert [(r["bucket"], r["visitors"]) for r in got] == [
        ("0-10 s", 3),
        ("10-100.5 s", 2),
        ("100.5+ s", 2),
    ]


def test_data_quality_and_failed_videos(results):
    got = [
        (r["date"], r["camera"], r["videos_failed"], r["frames_analysed"], r["visitors_dropped"])
        for r in results["data_quality"]
    ]
    assert got == [
        (D1, "cam1", 0, 300, 1),
        (D1, "cam2", 0, 200, 0),
        (D2, "cam1", 0, 180, 2),
        (D2, "cam2", 1, 0, 0),
    ]
    assert results["data_quality"][0]["analysed_pct"] == 20.0
    assert [(r["camera"], r["error"]) for r in results["failed_videos"]] == [
        ("cam2", "truncated file: moov atom not found")
    ]


def test_filters(output):
    daily = run_one(output, "daily_summary", camera="cam2")
    assert [(r["date"], r["visitors"], r["videos_failed"]) for r in daily] == [
        (D1, 2, 0),
        (D2, 0, 1),
    ]
    daily = run_one(output, "daily_summary", **{"from": D2})
    assert [(r["date"], r["visitors"]) for r in daily] == [(D2, 2)]
    daily = run_one(output, "daily_summary", **{"from": "2024-05-01", "to": "2024-05-01"})
    assert [(r["date"], r["visitors"]) for r in daily] == [(D1, 5)]
    hours = run_one(output, "visitors_by_hour", camera="cam1", **{"to": D1})
    assert [(r["hour"], r["visitors"]) for r in hours] == [(9, 2), (10, 1)]
    assert run_one(output, "failed_videos", camera="cam1") == []


def test_relation_api(output):
    con = connect(str(output))
    rel = catalog.relation(con, catalog.select_reports(["daily_summary"])[0], {"camera": "cam1"})
    assert rel.aggregate("sum(visitors)").fetchall() == [(5,)]


def test_empty_output_gives_empty_reports(tmp_path):
    results = catalog.run_reports(tmp_path, params=SITE)
    assert results["daily_summary"][1].num_rows == 0
    assert results["failed_videos"][1].num_rows == 0
    assert all(r["visitors"] == 0 for r in rows(results["age_gender"][1]))
    for fmt in formats.FORMATS:
        assert cli("--data", tmp_path, "--format", fmt, "--out", tmp_path / fmt) == 0
    page = (tmp_path / "html" / "report.html").read_text()
    assert "No rows for this selection." in page and "data:image/png" not in page


# -- formats and the command line -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_text_formats_show_every_report(output, capsys, fmt):
    assert cli("--data", output, "--format", fmt) == 0
    out = capsys.readouterr().out
    for r in catalog.list_reports():
        assert r.title in out
    assert "truncated file: moov atom not found" in out
    if fmt == "table":
        assert re.search(r"^2024-05-02\s+2\s+350\.5\s+350\.5\s+2\s+1$", out, re.M)
    else:
        assert "| 2024-05-02 | 2 | 350.5 | 350.5 | 2 | 1 |" in out


def test_every_format_writes_every_report(output, tmp_path, capsys):
    names = [r.name for r in catalog.list_reports()]
    for fmt in formats.FORMATS:
        assert cli("--data", output, "--format", fmt, "--out", tmp_path / fmt) == 0
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == sorted(f"{n}.csv" for n in names)
    daily = list(csv.DictReader((tmp_path / "csv" / "daily_summary.csv").open()))
    assert daily[0] == {
        "date": "2024-05-01",
        "visitors": "5",
        "median_dwell_s": "12",
        "mean_dwell_s": "53.4",
        "videos_processed": "2",
        "videos_failed": "0",
    }
    assert [p.name for p in (tmp_path / "table").iterdir()] == ["report.txt"]
    assert [p.name for p in (tmp_path / "markdown").iterdir()] == ["report.md"]
    assert [p.name for p in (tmp_path / "html").iterdir()] == ["report.html"]
    page = (tmp_path / "html" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    for n in names:
        assert f'id="{n}"' in page
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    charted = [r for r in catalog.list_reports() if r.chart]
    assert len(images) == len(charted) == 14  # two days and two cameras: every chart applies
    assert all(base64.b64decode(b).startswith(b"\x89PNG\r\n\x1a\n") for b in images)
    assert not re.search(r'(src|href)="(https?:|//|file:)|<link|<script', page)  # self-contained
    assert "wrote" in capsys.readouterr().out


def test_csv_to_stdout_and_report_selection(output, capsys):
    args = ["--data", output, "--format", "csv", "--report", "age_gender_broad"]
    assert cli(*args, "--broad-age-bands", "<40,40+") == 0
    got = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["band"], r["visitors"]) for r in got] == [("<40", "4"), ("40+", "3")]
    assert (
        cli("--data", output, "--format", "csv", "--report", "failed_videos", "daily_summary") == 0
    )
    out = capsys.readouterr().out
    assert out.index("# failed_videos") < out.index("# daily_summary")


def test_cli_filters(output, capsys):
    assert cli("--data", output, "--format", "csv", "--report", "daily_summary",
               "--camera", "cam1", "--from", "2024-05-02", "--to", "2024-05-02") == 0  # fmt: skip
    got = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["date"], r["visitors"]) for r in got] == [("2024-05-02", "2")]


def test_list(capsys):
    assert cli("--list") == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == [
        r.name for r in catalog.list_reports()
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "{missing}"], "does not exist"),
        (["--data", "{data}", "--from", "2024-13-01"], "invalid date '2024-13-01'"),
        (["--data", "{data}", "--to", "yesterday"], "invalid date 'yesterday'"),
        (["--data", "{data}", "--from", "2024-05-02", "--to", "2024-05-01"], "is after"),
        (["--data", "{data}", "--report", "nope"], "unknown report 'nope'"),
        (["--data", "{data}", "--age-bands", "0-9,ten+"], "bad band 'ten+'"),
        (["--data", "{data}", "--age-bands", "0-9,5-14,60+"], "'5-14' overlaps or comes before"),
        (["--data", "{data}", "--broad-age-bands", "30+,<30"], "'<30' overlaps or comes before"),
        (["--data", "{data}", "--dwell-buckets", "10,5"], "ascending"),
        (["--data", "{data}", "--attention-buckets", "1,1"], "ascending"),
        (["--data", "{data}", "--format", "pdf"], "invalid choice"),
        ([], "--data DIR is required"),
    ],
)
def test_user_errors_exit_2_with_one_line(output, tmp_path, capsys, args, message):
    args = [a.format(missing=tmp_path / "nowhere", data=output) for a in args]
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def test_bad_report_sql_exits_1_with_one_line(output, tmp_path, capsys):
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    (sql_dir / "broken.sql").write_text("-- Broken\nSELECT nonexistent_column FROM visitors\n")
    (sql_dir / "mine.sql").write_text("-- Mine\n-- @order: 1\nSELECT count(*) AS n FROM videos\n")
    assert cli("--sql-dir", sql_dir, "--list") == 0
    assert capsys.readouterr().out.split() == ["mine", "Mine", "broken", "Broken"]
    assert cli("--data", output, "--sql-dir", sql_dir, "--report", "mine", "--format", "csv") == 0
    assert capsys.readouterr().out == "n\n4\n"
    assert cli("--data", output, "--sql-dir", sql_dir) == 1
    err = capsys.readouterr().err
    assert "report broken failed" in err and len(err.strip().splitlines()) == 1


def test_a_shipped_report_copied_to_sql_dir_still_finds_the_shipped_macros(output, tmp_path):
    sql_dir = tmp_path / "mine"
    sql_dir.mkdir()
    shutil.copy(catalog.SQL_DIR / "age_gender.sql", sql_dir / "age_gender.sql")
    assert "age_gender_by_bands" in (sql_dir / "age_gender.sql").read_text()
    mine = catalog.run_reports(output, ["age_gender"], SITE, sql_dir=sql_dir)["age_gender"][1]
    shipped = catalog.run_reports(output, ["age_gender"], SITE)["age_gender"][1]
    assert mine.num_rows > 0 and mine.equals(shipped)


def test_camera_filter_takes_the_folder_name_and_warns_about_unknown_ones(output, capsys):
    """Camera ids are the folder name made partition-safe ('Front Door' is 'Front_Door'); the
    filter applies the same rule to what the user typed, and says when no such camera exists."""
    from schemas import camera_id

    assert camera_id("Front Door") == "Front_Door" == camera_id("Front_Door")
    assert camera_id("Cafe\u0301 Nord") == camera_id("Café Nord") == "Café_Nord"
    args = ["--data", output, "--report", "daily_summary", "--format", "csv"]
    assert cli(*args, "--camera", "cam1") == 0
    assert capsys.readouterr().err == ""
    assert cli(*args, "--camera", "cam9") == 0
    got = capsys.readouterr()
    assert got.out.strip().count("\n") == 0  # the header only
    assert got.err == "warning: no camera 'cam9' in the data (cameras: cam1, cam2)\n"


def test_the_readme_sql_counts_what_the_views_count(output, tmp_path):
    """The README's own queries, on an output that also holds a stale older analysis of v1 in
    another partition (left when a run dies between moving a video and cleaning up)."""
    import duckdb

    copy = tmp_path / "output"
    shutil.copytree(output, copy)
    stale = _video("v1", D1 - timedelta(days=1), "cam1", "ok", None, 10, 10, 1, 0)
    stale |= {"analysis_id": "a-v1-old", "processed_at": stale["processed_at"] - timedelta(days=30)}
    _write(copy, "videos", [stale], "v1")
    old = _visitor(0, "v1", stale["date"], "cam1", 40.0, "male", 9.0, "12:00", "a-v1-old")
    _write(copy, "visitors", [old], "v1")

    readme = (ROOT / "README.md").read_text()
    block = readme.split("### Querying the tables yourself", 1)[1].split("```sql", 1)[1]
    sql = block.split("```", 1)[0].replace("'output/", f"'{copy}/")
    statements = [q for q in sql.split(";") if q.strip()]
    assert len(statements) == 3  # two views, one example
    con = duckdb.connect()
    answers = [con.execute(q).fetchall() for q in statements]
    views = connect(str(copy))
    assert (
        answers[2]
        == views.execute(
            "SELECT date, camera, count(*), round(median(dwell_s), 1) FROM visitors "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    )
    assert sum(r[2] for r in answers[2]) == len(VISITOR_ROWS)  # neither the stale nor the orphan


def test_module_entry_point_help_and_no_traceback(tmp_path):
    cmd = [sys.executable, "-m", "jobs.report"]
    done = subprocess.run([*cmd, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for option in ("--data", "--from", "--to", "--camera", "--format", "--out", "--list"):
        assert option in done.stdout
    done = subprocess.run(
        [*cmd, "--data", str(tmp_path / "nowhere")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


# -- scheduling files ---------------------------------------------------------------------------

DEPLOY = ROOT / "deploy"
_CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec"
_CRON_NAMES = [None, None, None, _MONTHS, "sun mon tue wed thu fri sat"]


def _cron_field_ok(text: str, lo: int, hi: int, names: str | None) -> bool:
    def value(v: str) -> int | None:
        if v.isdigit():
            return int(v)
        if names and v.lower() in names.split():
            return names.split().index(v.lower()) + (1 if lo == 1 else 0)
        return None

    for item in text.split(","):
        base, _, step = item.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return False
        if base == "*":
            continue
        ends = [value(v) for v in base.split("-")]
        if len(ends) > 2 or any(e is None or not lo <= e <= hi for e in ends):
            return False
    return True


def test_cron_example():
    jobs = []
    for line in (DEPLOY / "cron.example").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):  # SHELL=, PATH=, MAILTO=
            continue
        jobs.append(line)
    assert jobs, "no crontab line"
    for job in jobs:
        fields = job.split(None, 5)
        assert len(fields) == 6, f"want 5 time fields and a command: {job}"
        for text, (lo, hi), names in zip(fields[:5], _CRON_RANGES, _CRON_NAMES, strict=True):
            assert _cron_field_ok(text, lo, hi, names), f"bad time field {text!r}: {job}"
        command = fields[5]
        assert "make nightly" in command or "jobs." in command
        assert "%" not in command.replace("\\%", "")  # cron turns a bare % into a newline
        assert re.search(r"cd /\S+ &&", command), "cron has no working directory: cd first"


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_systemd_units_parse_and_have_the_required_keys():
    service = _unit(DEPLOY / "kiosk-nightly.service")
    assert service["Unit"]["Description"]
    assert service["Service"]["Type"] == "oneshot"
    exec_start = service["Service"]["ExecStart"]
    assert exec_start.startswith("/") and "nightly" in exec_start
    assert service["Service"]["WorkingDirectory"].startswith("/")
    assert "Install" not in service  # started by the timer only

    timer = _unit(DEPLOY / "kiosk-nightly.timer")
    assert timer["Unit"]["Description"]
    assert timer["Timer"]["OnCalendar"]
    assert timer["Timer"]["Unit"] == "kiosk-nightly.service"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_units_verify(tmp_path):
    files = [DEPLOY / "kiosk-nightly.service", DEPLOY / "kiosk-nightly.timer"]
    done = subprocess.run(
        ["systemd-analyze", "verify", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on warnings too (unknown keys, bad values): any line about our units fails.
    ours = [ln for ln in (done.stdout + done.stderr).splitlines() if "kiosk-nightly" in ln]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr
    on_calendar = _unit(files[1])["Timer"]["OnCalendar"]
    done = subprocess.run(
        ["systemd-analyze", "calendar", on_calendar], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_mask_status_by_broad_age_group_and_gender_lists_all_eighteen_classes(results):
    got = {(r["band"], r["gender"]): r for r in results["mask_by_group"]}
    assert len(got) == 6  # 3 broad bands x 2 genders, each with 3 mask columns: 18 classes
    assert [(r["band"], r["gender"]) for r in results["mask_by_group"]][:2] == [
        ("<30", "female"),
        ("<30", "male"),
    ]
    # v1 5 y female with_mask; v1 25 y male without; v2 29.9 y male without
    assert (got["<30", "female"]["with_mask"], got["<30", "female"]["visitors"]) == (1, 1)
    assert (got["<30", "male"]["without_mask"], got["<30", "male"]["visitors"]) == (2, 2)
    # v1 34.5 female incorrect; v3 59.99 male without; v2 61 female with_mask; 60 male: none
    assert got["30-59", "female"]["with_incorrect_mask"] == 1
    assert got["30-59", "male"]["without_mask"] == 1
    assert got["60+", "female"]["with_mask"] == 1 and got["60+", "male"]["visitors"] == 0
    assert sum(r["visitors"] for r in results["mask_by_group"]) == 6  # the 7th has no mask head


def test_mood_by_hour_and_by_age_band(results):
    by_hour = {r["hour"]: r for r in results["mood_by_hour"]}
    # 09:10 happy, 09:40 neutral, 09:00 surprise; 10:05 sad; 14:00 happy, 14:30 angry
    assert (by_hour[9]["happy"], by_hour[9]["neutral"], by_hour[9]["surprise"]) == (1, 1, 1)
    assert by_hour[9]["happy_frames_pct"] == pytest.approx(100 * (0.8 + 0.1 + 0.2) / 3, abs=0.1)
    assert (by_hour[10]["negative"], by_hour[14]["happy"], by_hour[14]["negative"]) == (1, 1, 1)
    assert 11 not in by_hour  # the 11:15 visitor has no emotion reading
    by_band = {r["band"]: r for r in results["mood_by_age_band"]}
    assert by_band["0-9"]["happy"] == 1 and by_band["30-39"]["negative"] == 1
    assert by_band["50-59"]["surprise"] == 1
    assert (by_band["60+"]["visitors"], by_band["60+"]["negative"]) == (1, 1)


# -- attention ----------------------------------------------------------------------------------


def test_attention_rate_by_hour(results):
    got = [
        (r["hour"], r["visitors"], r["watchers"], r["passers_by"], r["attention_rate_pct"])
        for r in results["attention_by_hour"]
    ]
    # 09:00 (59.99 y) was analysed before attention was read: left out
    assert got == [(9, 2, 1, 1, 50.0), (10, 1, 1, 0, 100.0), (11, 1, 1, 0, 100.0),
                   (14, 2, 1, 1, 50.0)]  # fmt: skip
    assert [r["mean_attention_s"] for r in results["attention_by_hour"]] == [1.4, 30, 1, 75]


def test_attention_rate_by_age_band_and_gender(output, results):
    got = {(r["band"], r["gender"]): r for r in results["attention_by_age_gender"]}
    assert len(got) == 2 * len(DEFAULT_AGE_BANDS)
    assert [(r["band"], r["gender"]) for r in results["attention_by_age_gender"]][:3] == [
        ("0-9", "female"),
        ("0-9", "male"),
        ("10-19", "female"),
    ]
    assert (got["0-9", "female"]["watchers"], got["0-9", "female"]["attention_rate_pct"]) == (
        1,
        100.0,
    )
    assert got["0-9", "male"]["visitors"] == 0 and got["0-9", "male"]["attention_rate_pct"] is None
    # 25.0 (0.4 s) and 29.9 (0 s): two passers-by
    assert [got["20-29", "male"][k] for k in ("visitors", "watchers", "attention_rate_pct")] == [
        2,
        0,
        0.0,
    ]
    assert got["20-29", "male"]["mean_attention_s"] == 0.2
    assert got["50-59", "male"]["visitors"] == 0  # 59.99: not read
    assert got["60+", "male"]["watchers"] == 1  # 1.0 s: exactly the minimum, a watcher as stored
    got = run_one(output, "attention_by_age_gender", age_bands=["<30", "30+"])
    assert [(r["band"], r["gender"], r["visitors"], r["watchers"]) for r in got] == [
        ("<30", "female", 1, 1),
        ("<30", "male", 2, 0),
        ("30+", "female", 2, 2),
        ("30+", "male", 1, 1),
    ]


def test_attention_distribution(output, results, capsys):
    got = [(r["bucket"], r["visitors"], r["share_pct"]) for r in results["attention_distribution"]]
    assert got == [
        ("0-1 s", 2, 33.3),  # 0.4 and 0
        ("1-2 s", 1, 16.7),
        ("2-5 s", 1, 16.7),
        ("5-10 s", 0, 0),
        ("10-30 s", 0, 0),
        ("30-60 s", 1, 16.7),
        ("60+ s", 1, 16.7),
    ]
    got = run_one(output, "attention_distribution", attention_buckets=[0, 2.5])
    assert [(r["bucket"], r["visitors"]) for r in got] == [("0-2.5 s", 4), ("2.5+ s", 2)]
    args = ["--data", output, "--format", "csv", "--report", "attention_distribution"]
    assert cli(*args, "--attention-buckets", "0,10") == 0
    got = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["bucket"], r["visitors"]) for r in got] == [("0-10 s", "4"), ("10+ s", "2")]


def test_attention_reports_over_files_written_before_attention_count_nothing(tmp_path):
    """An output whose files lack the attention columns (written before they were added)
    reads them as NULL: the attention reports list no visitor rather than fail."""
    output = make_output(tmp_path / "output")
    for path in (output / "visitors").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["attention_s", "watcher"]), path)
    for path in (output / "videos").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["watchers", "passers_by"]), path)
    assert run_one(output, "attention_by_hour") == []
    assert all(r["visitors"] == 0 for r in run_one(output, "attention_by_age_gender"))
    assert all(r["visitors"] == 0 for r in run_one(output, "attention_distribution"))
    assert sum(r["visitors"] for r in run_one(output, "daily_summary")) == len(VISITOR_ROWS)
    for fmt in formats.FORMATS:
        assert cli("--data", output, "--format", fmt, "--out", tmp_path / fmt) == 0


def test_unique_people_counts_each_days_person_ids(tmp_path):
    """Visits, distinct people and returning visits per day from visitors' person ids (an
    analysis with identity.enabled); a visitor without one counts as a person of their own."""
    output = make_output(tmp_path / "output")
    for path in (output / "visitors").rglob("*.parquet"):
        table = pq.read_table(path)
        ids = [None if t == 0 else f"p{t % 3}" for t in table.column("track_id").to_pylist()]
        at = table.schema.get_field_index("person_id")
        pq.write_table(table.set_column(at, "person_id", pa.array(ids, pa.string())), path)
    committed = (
        connect(str(output))
        .execute("SELECT date, person_id, video_id, track_id FROM visitors")
        .fetchall()
    )
    by_day: dict = {}
    for day, person, video, track in committed:
        by_day.setdefault(day, []).append(person or f"{video}:{track}")
    got = run_one(output, "unique_people")
    assert [r["date"] for r in got] == sorted(by_day)
    for r in got:
        persons = by_day[r["date"]]
        assert r["visits"] == len(persons) and r["people"] == len(set(persons))
        assert r["returning_visits"] == len(persons) - len(set(persons))
    assert sum(r["returning_visits"] for r in got) > 0
    assert cli("--data", output, "--report", "unique_people", "--format", "html", "--out",
               tmp_path / "html") == 0  # fmt: skip
