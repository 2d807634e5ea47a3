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


def test_a_crash_of_the_pipeline_is_one_line_a_summary_and_its_own_exit_code(
    tiny_model, tmp_path, monkeypatch, capsys
):
    """A failure no input explains (here the disk fills while the third video is published)
    stops the run with exit 3, not 1 ("some inputs failed"): one error line, the summary of
    what was committed, the lock released; the next run does the rest."""
    import json

    import pipelines.steps as stages
    from jobs.cli import EXIT_CRASHED
    from jobs.cli import run as run_cli
    from schemas.lock import LOCK_NAME

    inp, out = tmp_path / "v", tmp_path / "out"
    for i in range(5):
        write_clip(inp / "cam0" / f"20261122_1{i}0000.mp4", seconds=2, fps=10)
    published, real_publish = [], stages.publish

    def filling_disk(*a, **kw):
        if a[1] == "videos" and len(published) == 2:
            raise OSError(28, "No space left on device")
        path = real_publish(*a, **kw)
        if a[1] == "videos":
            published.append(path)
        return path

    monkeypatch.setattr(stages, "publish", filling_disk)
    assert run_cli(analyze.main, args(tiny_model, inp, out)) == EXIT_CRASHED == 3
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "the pipeline crashed" in err[0], captured.err
    assert "No space left on device" in err[0] and "Traceback" not in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["crashed"] is True and summary["videos_ok"] == 2
    assert not (out / LOCK_NAME).exists()
    monkeypatch.setattr(stages, "publish", real_publish)
    assert analyze.main(args(tiny_model, inp, out)) == 0
    statuses = connect(str(out)).execute("SELECT status FROM videos").fetchall()
    assert statuses == [("ok",)] * 5


def test_the_summary_says_when_start_times_are_file_dates_and_all_videos_one_camera(
    tiny_model, tmp_path, capsys
):
    inp = tmp_path / "dump"
    write_clip(inp / "a.mp4", seconds=1, fps=5)  # no date-time in the names: the files' dates
    write_clip(inp / "b.mp4", seconds=1, fps=5)
    write_clip(inp / "20261122_093000.mp4", seconds=1, fps=5)
    assert analyze.main(args(tiny_model, inp, tmp_path / "out")) == 0
    notes = [x for x in capsys.readouterr().out.splitlines() if x.startswith("note: ")]
    assert notes[0].startswith("note: 2 of 3 videos have no date-time in their name"), notes
    assert notes[1].startswith("note: all 3 videos sit in one folder, so they count as one camera")
    assert len(notes) == 2
    capsys.readouterr()
    inp2 = tmp_path / "sorted"
    write_clip(inp2 / "door" / "20261122_093000.mp4", seconds=1, fps=5)
    write_clip(inp2 / "till" / "20261122_093000.mp4", seconds=1, fps=5)
    assert analyze.main(args(tiny_model, inp2, tmp_path / "out2")) == 0
    assert "note: " not in capsys.readouterr().out
