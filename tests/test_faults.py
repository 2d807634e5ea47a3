"""Crash safety and idempotence: a run killed at any moment, and the same night run twice."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from videos import write_clip

from jobs import analyze
from schemas.views import connect

REPO = Path(__file__).resolve().parents[1]

# The job with a pause after each video's commit record, so that a kill after the first video is
# published lands mid-run however fast the machine (10 small videos publish within ~50 ms). The
# patch reaches the stage because args() pins --workers 1: the stages run in this process.
SLOW_PUBLISH = """
import sys, time
import pipelines.steps as stages
from jobs import analyze

def slow_publish(*args, **kwargs):
    stages_publish(*args, **kwargs)
    if args[1] == "videos":
        time.sleep(0.5)

stages_publish, stages.publish = stages.publish, slow_publish
sys.exit(analyze.main(sys.argv[1:]))
"""
STABLE_VIDEO_COLUMNS = (
    "video, camera, date, start_time, status, error, frames_decoded, frames_analysed, "
    "faces_detected, tracks, visitors, visitors_dropped"
)


def recordings(root: Path) -> Path:
    for i in range(6):
        write_clip(root / f"cam{i % 2}" / f"20261122_1{i}0000.mp4", seconds=2, fps=10)
    (root / "cam0" / "broken.mp4").write_text("not a video")
    gifs = sorted((SHARED_DATA / "videos").glob("*.gif")) if SHARED_DATA.exists() else []
    for gif in gifs:  # real faces, so visitor rows are compared too
        shutil.copy(gif, root / "cam1" / gif.name)
    return root


def tables(out: Path) -> tuple[list, list]:
    con = connect(str(out))
    videos = con.execute(f"SELECT {STABLE_VIDEO_COLUMNS} FROM videos ORDER BY video").fetchall()
    visitors = con.execute(
        "SELECT video, track_id, start_s, end_s, frames, round(age, 3), gender "
        "FROM visitors ORDER BY video, track_id"
    ).fetchall()
    return videos, visitors


def args(model, inp, out):
    return [
        "--input",
        str(inp),
        "--output",
        str(out),
        "--model",
        str(model),
        "--workers",
        "1",
        "--no-progress",
    ]


def test_killed_run_is_repaired_by_the_next(tiny_model, tmp_path):
    inp = recordings(tmp_path / "videos")
    reference = tmp_path / "reference"
    assert analyze.main(args(tiny_model, inp, reference)) == 1  # broken.mp4 fails
    expected = tables(reference)
    assert len(expected[0]) >= 7

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_PUBLISH, *args(tiny_model, inp, out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "videos").rglob("*.parquet")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    published = len(list((out / "videos").rglob("*.parquet")))
    assert 0 < published < len(expected[0]), "the kill should land mid-run"
    assert (out / ".analyze.lock").exists()  # left behind by the dead run: stale

    assert analyze.main(args(tiny_model, inp, out)) == 1
    assert tables(out) == expected
    assert not list(out.rglob("*.tmp"))


def test_same_night_twice_changes_nothing(tiny_model, tmp_path, capsys):
    inp = recordings(tmp_path / "videos")
    out = tmp_path / "out"
    analyze.main(args(tiny_model, inp, out))
    first = tables(out)
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet") if "broken" not in str(p)}
    capsys.readouterr()
    analyze.main(args(tiny_model, inp, out))
    assert tables(out) == first
    ok_files = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet") if p in files}
    # Only the failed input is retried; every published ok video is left untouched.
    con = connect(str(out))
    failed_ids = {
        r[0] for r in con.execute("SELECT video_id FROM videos WHERE status='failed'").fetchall()
    }
    untouched = {p: t for p, t in files.items() if p.stem not in failed_ids}
    assert all(ok_files[p] == t for p, t in untouched.items())
    assert len(untouched) >= 2 * 6


def _without_root_file_access() -> list[str]:
    """Root reads any file, so as root the job runs without the capabilities that allow it."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root and util-linux setpriv is missing")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def test_unreadable_file_is_recorded_failed(tiny_model, tmp_path):
    inp = tmp_path / "v"
    write_clip(inp / "cam" / "ok.mp4", seconds=1)
    locked = write_clip(inp / "cam" / "locked.mp4", seconds=1)
    locked.chmod(0)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            *_without_root_file_access(),
            sys.executable,
            "-m",
            "jobs.analyze",
            *args(tiny_model, inp, out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    rows = dict(
        connect(str(out))
        .execute(
            "SELECT regexp_extract(video, '[^/]+$'), status || ': ' || coalesce(error, '') "
            "FROM videos"
        )
        .fetchall()
    )
    assert rows["ok.mp4"] == "ok: "
    assert rows["locked.mp4"] == "failed: cannot read file: Permission denied"
