"""The analysis job end to end on generated clips: tables, bad inputs, reruns, errors, runners."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onnx_models import write_tiny_model
from videos import corrupt_middle, truncate, without_index, write_audio_only, write_clip

from jobs import analyze
from jobs.cli import run as run_cli
from pipelines import runner
from schemas.lock import LOCK_NAME
from schemas.views import connect


def run_job(tiny_model, inp, out, *extra):
    args = ["--input", str(inp), "--output", str(out), "--model", str(tiny_model)]
    return analyze.main(args + ["--workers", "1", "--no-progress", *extra])


def videos(out):
    return (
        connect(str(out))
        .execute(
            "SELECT regexp_extract(video, '[^/]+$') AS name, camera, status, error, "
            "frames_analysed, start_time_source, CAST(date AS VARCHAR) FROM videos ORDER BY name"
        )
        .fetchall()
    )


@pytest.fixture()
def night(tmp_path):
    """A night's recordings: good clips from two cameras and every kind of bad input."""
    root = tmp_path / "videos"
    write_clip(root / "lobby" / "20261122_093000.mp4", seconds=2, fps=10)
    write_clip(root / "door" / "walk.mkv", seconds=1, fps=10, creation_time="2026-11-21T23:30:00Z")
    clean = write_clip(tmp_path / "clean.mp4", seconds=3, fps=25, size=(320, 240))
    indexed_first = write_clip(tmp_path / "fs.mp4", seconds=3, fps=25, faststart=True)
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "notes.mp4").write_text("this is a text file, not a video\n")
    write_audio_only(bad / "audio.mp4")
    without_index(clean, bad / "noindex.mp4")
    truncate(indexed_first, bad / "cut.mp4", 0.5)
    corrupt_middle(clean, bad / "glitch.mp4")
    write_clip(bad / "phone.mp4", seconds=1, fps=10, rotation=90)
    write_clip(bad / "tiny.mp4", seconds=1, fps=10, size=(64, 48))
    write_clip(bad / "uhd.mp4", seconds=0.4, fps=5, size=(3840, 2160))
    write_clip(bad / "vfr.mp4", fps=20, frame_times=[0, 0.05, 0.4, 0.45, 1.3, 1.9])
    write_clip(bad / "hevc.mkv", seconds=1, fps=10, codec="libx265")
    (bad / "readme.txt").write_text("not matched: not a video extension")
    return root


def test_a_night_with_bad_inputs(tiny_model, night, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_job(tiny_model, night, out) == 1  # some inputs failed, the rest written
    rows = {r[0]: r for r in videos(out)}
    assert set(rows) == {
        "20261122_093000.mp4",
        "walk.mkv",
        "empty.mp4",
        "notes.mp4",
        "audio.mp4",
        "noindex.mp4",
        "cut.mp4",
        "glitch.mp4",
        "phone.mp4",
        "tiny.mp4",
        "uhd.mp4",
        "vfr.mp4",
        "hevc.mkv",
    }
    failed = {name: r[3] for name, r in rows.items() if r[2] == "failed"}
    assert set(failed) == {"empty.mp4", "notes.mp4", "audio.mp4", "noindex.mp4"}
    assert failed["audio.mp4"] == "no video stream (file has audio streams)"
    assert failed["empty.mp4"] == "empty file (0 bytes)"
    assert all(reason and "\n" not in reason for reason in failed.values())
    ok = {name: r for name, r in rows.items() if r[2] == "ok"}
    assert ok["20261122_093000.mp4"][1:] == ("lobby", "ok", None, 10, "filename", "2026-11-22")
    assert ok["walk.mkv"][5] == "metadata"
    assert ok["phone.mp4"][4] == 5 and ok["uhd.mp4"][4] == 2 and ok["cut.mp4"][4] >= 1
    assert ok["vfr.mp4"][4] == 4  # 0, 0.4, 1.3, 1.9 on a 5 fps grid
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(summary)["videos_failed"] == 4

    # A rerun redoes only what failed; nothing is duplicated.
    before = videos(out)
    assert run_job(tiny_model, night, out) == 1
    assert videos(out) == before
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["videos_unchanged"] == 9 and last["videos_failed"] == 4 and last["videos_ok"] == 0


def test_folders_named_like_globs_or_videos_and_non_ascii_cameras(tiny_model, tmp_path):
    """An existing path is taken as it is: a camera folder 'cam[1]' is not a glob, and a folder
    named like a video ('day.mp4/') is searched, not analysed. Camera ids keep their letters."""
    write_clip(tmp_path / "cam[1]" / "20261122_100000.mp4", seconds=1, fps=10)
    write_clip(tmp_path / "day.mp4" / "Café Nord" / "20261122_110000.mp4", seconds=1, fps=10)
    for folder, camera in (("cam[1]", "cam_1_"), ("day.mp4", "Café_Nord")):
        out = tmp_path / f"out-{camera}"
        assert run_job(tiny_model, tmp_path / folder, out) == 0
        assert [(row[1], row[2]) for row in videos(out)] == [(camera, "ok")]


@pytest.fixture()
def east_of_utc(monkeypatch):
    """This process's local clock 9 hours ahead of UTC (a Tokyo site), restored afterwards."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_rerun_after_fixing_and_force(tiny_model, tmp_path, east_of_utc):
    root = tmp_path / "v"
    write_clip(root / "cam" / "20261122_100000.mp4", seconds=1, fps=10)
    (root / "cam" / "20261122_110000.mp4").write_bytes(b"")
    out = tmp_path / "out"
    before = datetime.now(UTC)
    assert run_job(tiny_model, root, out) == 1
    write_clip(root / "cam" / "20261122_110000.mp4", seconds=1, fps=10)  # recording recovered
    assert run_job(tiny_model, root, out) == 0
    stamps = connect(str(out)).execute("SELECT processed_at FROM videos").fetchall()
    # UTC, not the site's clock (which is 9 h ahead here)
    assert all(before <= t <= datetime.now(UTC) for (t,) in stamps)
    assert [r[2] for r in videos(out)] == ["ok", "ok"]
    ids = connect(str(out)).execute("SELECT analysis_id FROM videos ORDER BY video").fetchall()
    assert run_job(tiny_model, root, out, "--force") == 0
    again = connect(str(out)).execute("SELECT analysis_id FROM videos ORDER BY video").fetchall()
    assert len(again) == 2 and set(again).isdisjoint(ids)
    files = sorted(p.name for p in (out / "videos").rglob("*.parquet"))
    assert len(files) == 2


def test_date_selection(tiny_model, tmp_path):
    root = tmp_path / "v"
    write_clip(root / "cam" / "20261121_235959.mp4", seconds=1, fps=10)
    write_clip(root / "cam" / "20261122_000001.mp4", seconds=1, fps=10)
    (root / "cam" / "20261001_120000.mp4").write_text("an old broken recording")
    out = tmp_path / "out"
    # The old broken file is outside the dates: not this run's failure, so the run is clean.
    assert run_job(tiny_model, root, out, "--date", "2026-11-22") == 0
    assert [r[0] for r in videos(out)] == ["20261122_000001.mp4"]
    assert run_job(tiny_model, root, out, "--since", "2026-11-01") == 0
    assert len(videos(out)) == 2
    assert run_job(tiny_model, root, out, "--since", "2026-10-01") == 1
    assert [r[2] for r in videos(out)] == ["failed", "ok", "ok"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "/nonexistent/model.onnx"], "model file not found"),
        (["--runner", "NoSuchRunner"], "unknown runner"),
        (["--runner", "PrismRunner"], "downloads its binary"),
        (["--runner", "prism"], "runner PrismRunner downloads its binary at run time"),
        (["--runner", "FlinkRunner"], "runner FlinkRunner needs a job server: pass --job_endpoint"),
        (["--runner", "spark"], "or --spark_job_server_jar FILE (Beam's job-server jar)"),
        (["--runner", "PortableRunner"], "(--job_endpoint embed runs Beam's in-process one)"),
        (
            ["--runner", "flink", "--flink_job_server_jar=/nowhere/job-server.jar"],
            "--flink_job_server_jar /nowhere/job-server.jar is no file here",
        ),
        (["--fps", "0"], "--fps must be a positive number"),
        (["--fps", "nan"], "--fps must be a positive number"),
        (["--config", "/nonexistent.yaml"], "cannot read config"),
        (["--direct_num_workers=abc"], "invalid Beam options --direct_num_workers=abc: argument"),
        (["--forse"], "unknown option --forse"),
        (["b.mp4", "c.mp4"], "unexpected argument b.mp4: --input takes one path; quote a glob"),
        (["--output", "foo://bucket/out"], "Beam has no filesystem for foo://"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(tiny_model, tmp_path, capsys, extra, message):
    write_clip(tmp_path / "v" / "a.mp4", seconds=1)

    argv = [
        "--input",
        str(tmp_path / "v"),
        "--output",
        str(tmp_path / "o"),
        "--model",
        str(tiny_model),
        *extra,
    ]
    code = run_cli(analyze.main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "o" / "videos").exists()


def test_a_relative_glob_and_its_folder_are_one_video(tiny_model, tmp_path, monkeypatch, capsys):
    write_clip(tmp_path / "v" / "cam" / "a.mp4", seconds=1, fps=10)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert run_job(tiny_model, "v/cam/*.mp4", out) == 0
    assert run_job(tiny_model, tmp_path / "v", out) == 0
    assert "0 videos: 0 ok, 0 failed; 1 unchanged since the last run" in capsys.readouterr().out
    assert len(list((out / "videos").rglob("*.parquet"))) == 1


def test_non_video_input_no_videos_and_a_damaged_table_file(tiny_model, tmp_path, capsys):
    write_clip(tmp_path / "v" / "a.mp4", seconds=1, fps=10)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    out = tmp_path / "out"

    def refused(inp) -> str:
        argv = ["--input", str(inp), "--output", str(out), "--model", str(tiny_model)]
        assert run_cli(analyze.main, [*argv, "--workers", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        return err[0]

    assert "does not have a video extension" in refused(notes)
    (tmp_path / "empty").mkdir()
    assert run_job(tiny_model, tmp_path / "empty", out) == 0
    assert "warning: no videos found under" in capsys.readouterr().err
    damaged = out / "videos" / "date=2024-01-01" / "camera=x" / "damaged.parquet"
    damaged.parent.mkdir(parents=True)
    damaged.write_text("junk")
    err = refused(tmp_path / "v")
    assert "cannot read the tables already in" in err and "damaged.parquet" in err
    damaged.unlink()
    foreign = damaged.with_name("foreign.parquet")
    pq.write_table(pa.table({"a": [1]}), foreign)  # not ours
    assert "cannot read the tables already in" in refused(tmp_path / "v")
    # Beside files of ours it would read as a row of NULLs (the views match columns by name).
    foreign.unlink()
    assert run_job(tiny_model, tmp_path / "v", out) == 0
    capsys.readouterr()
    pq.write_table(pa.table({"a": [1]}), foreign)
    err = refused(tmp_path / "v")
    assert "foreign.parquet is not a videos file of this analysis (it lacks video_id" in err


@pytest.mark.parametrize(
    "scheme, extra, module",
    [("gs", "gcp", "google.cloud.storage"), ("s3", "aws", "boto3"), ("hdfs", "hadoop", "hdfs")],
)
def test_a_remote_path_without_its_filesystem_is_refused_before_any_work(
    tiny_model, tmp_path, capsys, scheme, extra, module
):
    try:
        installed = importlib.util.find_spec(module) is not None
    except ImportError:
        installed = False
    if installed:
        pytest.skip(f"{module} is installed: Beam's {extra} extra is there")
    write_clip(tmp_path / "v" / "a.mp4", seconds=1)
    for flag in ("--output", "--input"):
        argv = ["--input", str(tmp_path / "v"), "--output", str(tmp_path / "o")]
        argv += [flag, f"{scheme}://bucket/videos", "--model", str(tiny_model)]
        assert run_cli(analyze.main, argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"error: {flag[2:]} {scheme}://bucket/videos: {scheme}:// needs Beam's {extra} "
            f"extra; install it with pip install -e '.[{extra}]'"
        ]
    assert not (tmp_path / "o").exists()


def test_the_console_script_gives_one_line_errors(monkeypatch, capsys):
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="kiosk-analyze")
    monkeypatch.setattr("sys.argv", ["kiosk-analyze", "--input", "/nonexistent/videos"])
    with pytest.raises(SystemExit) as exit_:
        script.load()()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: input not found: /nonexistent/videos\n"


def _with_reader_gone(argv: list[str]) -> tuple[int, str]:
    """Run a job whose standard output nobody reads (``... | head`` after head has left)."""
    job = subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    job.stdout.close()
    err = job.stderr.read()
    return job.wait(), err


def test_a_reader_that_leaves_early_changes_no_exit_code(tiny_model, tmp_path):
    root = tmp_path / "v"
    write_clip(root / "cam" / "20261122_100000.mp4", seconds=1, fps=10)
    (root / "cam" / "20261122_110000.mp4").write_bytes(b"")  # fails: the job's code is 1
    out = tmp_path / "out"
    argv = ["-m", "jobs.analyze", "--input", str(root), "--output", str(out)]
    code, err = _with_reader_gone(argv + ["--model", str(tiny_model), "--workers", "1"])
    assert code == 1 and "Traceback" not in err and "Broken pipe" not in err, err
    code, err = _with_reader_gone(["-m", "jobs.report", "--data", str(out), "--format", "csv"])
    assert code == 0 and err == "", err


def test_ctrl_c_inside_a_step_exits_130_with_one_line(
    tiny_model, tmp_path, monkeypatch, capsys, caplog
):
    """In-process (one worker) Beam re-raises a KeyboardInterrupt from a step as RuntimeError;
    the job still reports it as an interruption, and nothing is committed."""
    write_clip(tmp_path / "v" / "a.mp4", seconds=1)

    def interrupted(self):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr("pipelines.frames.VideoReader.frames", interrupted)
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "v"), "--output", str(out), "--model", str(tiny_model)]
    assert run_cli(analyze.main, args + ["--workers", "1", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert err.endswith("interrupted\n") and "Traceback" not in err, err
    # Beam logs the interrupted step with its traceback; the job's logging drops that record
    # (pytest's own log capture sees what the job's handlers would print).
    assert "KeyboardInterrupt" not in caplog.text, caplog.text
    assert not list(out.rglob("*.parquet")) and not (out / LOCK_NAME).exists()


def test_wrong_model_file_and_unwritable_output(tmp_path, capsys):

    write_clip(tmp_path / "v" / "a.mp4", seconds=1)
    wrong = tmp_path / "wrong.onnx"
    write_tiny_model(wrong, outputs=("age_logits", "gender_logits"))
    argv = ["--input", str(tmp_path / "v"), "--output", str(tmp_path / "o"), "--model", str(wrong)]
    assert run_cli(analyze.main, argv) == 2
    assert "outputs age, gender_prob are missing" in capsys.readouterr().err
    not_onnx = tmp_path / "text.onnx"
    not_onnx.write_text("no")
    argv[-1] = str(not_onnx)
    assert run_cli(analyze.main, argv) == 2
    assert "is not a loadable ONNX model" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["--input", str(tmp_path / "v"), "--output", str(blocker / "out"), "--model", str(wrong)]
    write_tiny_model(wrong)
    assert run_cli(analyze.main, argv) == 2
    assert "is not writable" in capsys.readouterr().err


def test_lock_stops_a_second_run_and_stale_lock_is_taken_over(tiny_model, tmp_path, capsys):

    write_clip(tmp_path / "v" / "a.mp4", seconds=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    argv = [
        "--input",
        str(tmp_path / "v"),
        "--output",
        str(out),
        "--model",
        str(tiny_model),
        "--workers",
        "1",
        "--no-progress",
    ]
    assert run_cli(analyze.main, argv) == 2
    assert "another analysis" in capsys.readouterr().err
    (out / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname().nodename}))
    assert run_cli(analyze.main, argv) == 0
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize(
    ("name", "resolved"),
    [
        ("direct", "DirectRunner"),
        ("DIRECTRUNNER", "DirectRunner"),
        ("SwitchingDirectRunner", "DirectRunner"),
        ("apache_beam.runners.direct.direct_runner.DirectRunner", "DirectRunner"),
        ("dask", "DaskRunner"),
        ("apache_beam.runners.dask.dask_runner.DaskRunner", "DaskRunner"),
        ("flink", "FlinkRunner"),
        ("portable", "PortableRunner"),
        ("my_site.runners.CustomRunner", "my_site.runners.CustomRunner"),
    ],
)
def test_runner_names_as_beam_takes_them(name, resolved):
    assert runner.resolve_name(name) == resolved


def test_a_portable_runner_with_a_job_server_passes_the_checks(tmp_path):
    options = runner.pipeline_options("flink", 1, ["--job_endpoint=localhost:8099"])
    assert options.get_all_options()["job_endpoint"] == "localhost:8099"
    jar = tmp_path / "beam-runners-spark-3-job-server-2.77.0.jar"
    jar.write_bytes(b"")
    options = runner.pipeline_options("SparkRunner", 1, [f"--spark_job_server_jar={jar}"])
    assert options.get_all_options()["spark_job_server_jar"] == str(jar)


def test_dask_without_its_extra_is_refused(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        runner.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "distributed" else real(name, *a),
    )
    with pytest.raises(runner.RunnerError, match=r"pip install -e '\.\[dask\]'"):
        runner.pipeline_options("DaskRunner", 1, [])


def test_portable_runner_with_in_process_job_service(tiny_model, tmp_path):
    write_clip(tmp_path / "v" / "cam" / "20261122_120000.mp4", seconds=1, fps=10)
    out = tmp_path / "out"
    code = run_job(
        tiny_model,
        tmp_path / "v",
        out,
        "--runner",
        "PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=LOOPBACK",
    )
    assert code == 0
    assert videos(out)[0][:3] == ("20261122_120000.mp4", "cam", "ok")


def test_a_run_that_died_before_its_videos_row_is_redone(tiny_model, tmp_path):
    """The videos row is the commit record, written last; without it the video counts as not
    analysed. (That the views hide the orphaned visitor rows meanwhile is checked with known
    rows in test_reports.py::test_uncommitted_visitor_is_invisible.)"""
    write_clip(tmp_path / "v" / "cam" / "20261122_120000.mp4", seconds=1, fps=10)
    out = tmp_path / "out"
    assert run_job(tiny_model, tmp_path / "v", out) == 0
    for f in (out / "videos").rglob("*.parquet"):
        f.unlink()  # as if the run died between the visitors file and the videos file
    assert videos(out) == []
    assert run_job(tiny_model, tmp_path / "v", out) == 0  # the next run repairs it
    assert [r[2] for r in videos(out)] == ["ok"]


def test_nightly_analyses_one_day_and_reports_it(tiny_model, tmp_path, capsys):
    from jobs import nightly

    root = tmp_path / "v"
    write_clip(root / "lobby" / "20261122_080000.mp4", seconds=1, fps=10)
    write_clip(root / "lobby" / "20261123_080000.mp4", seconds=1, fps=10)
    out = tmp_path / "out"
    code = nightly.main(
        [
            "--input",
            str(root),
            "--output",
            str(out),
            "--date",
            "2026-11-22",
            "--",
            "--model",
            str(tiny_model),
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    assert [r[0] for r in videos(out)] == ["20261122_080000.mp4"]
    printed = capsys.readouterr().out
    assert "daily_summary" in printed.lower() or "daily summary" in printed.lower()
    assert "2026-11-22" in printed
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["--input", str(root), "--output", str(out), "--report-out", str(blocker / "r")]
    assert run_cli(nightly.main, argv) == 2  # refused before the night is analysed
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize("after_separator", [False, True])
def test_nightly_reports_in_the_site_config_age_bands(
    tiny_model, tmp_path, capsys, after_separator
):
    from jobs import nightly

    write_clip(tmp_path / "v" / "lobby" / "20261122_080000.mp4", seconds=1, fps=10)
    site = tmp_path / "site.yaml"
    site.write_text("visitors: {age_bands: [18, 65]}\n")
    argv = ["--input", str(tmp_path / "v"), "--output", str(tmp_path / "out")]
    argv += ["--date", "2026-11-22", "--format", "csv"]
    config = ["--config", str(site)]
    analysis = ["--model", str(tiny_model), "--workers", "1", "--no-progress"]
    if after_separator:
        argv += ["--", *config, *analysis]
    else:
        argv += [*config, "--", *analysis]
    assert nightly.main(argv) == 0
    printed = capsys.readouterr().out
    assert "0-17," in printed and "18-64," in printed and "65+," in printed
    assert "20-29," not in printed


def test_worker_processes_give_the_same_rows_quietly(tmp_path, capfd):
    """--workers 2 runs videos in separate worker processes (pipelines/runner.py): the tables
    hold the same visitors as one worker, and the workers print none of Beam's start-up notes."""
    from conftest import SHIPPED_MODEL

    demo = Path(__file__).resolve().parents[1] / "demo" / "kiosk_20240501_100000.mp4"
    for camera in ("lobby", "door"):
        (tmp_path / "v" / camera).mkdir(parents=True)
        shutil.copy(demo, tmp_path / "v" / camera / demo.name)
    rows = {}
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        argv = ["--input", str(tmp_path / "v"), "--output", str(out), "--model", str(SHIPPED_MODEL)]
        assert analyze.main(argv + ["--workers", workers, "--no-progress"]) == 0
        rows[workers] = (
            connect(str(out))
            .execute(
                "SELECT camera, track_id, frames, round(age, 3), gender FROM visitors "
                "ORDER BY camera, track_id"
            )
            .fetchall()
        )
    assert len(rows["1"]) == 2 and {r[0] for r in rows["1"]} == {"lobby", "door"}
    assert rows["2"] == rows["1"]
    err = capfd.readouterr().err
    for noise in ("Logging handler created", "semi_persistent", "apitools", "Resource module"):
        assert noise not in err, err


@pytest.mark.parametrize(
    ("detector", "message"),
    [
        ("{name: yunet, model: /nowhere/yunet.onnx}", "not found"),
        ("{name: mtcnn, model: /nowhere/yunet.onnx}", "remove detector.model"),
        ("{name: scrfd}", "unknown face detector 'scrfd'"),
        ("{name: yunet, landmarks: dlib}", "detector.landmarks must be onet"),
    ],
)
def test_detector_configuration_errors(tiny_model, tmp_path, capsys, detector, message):
    write_clip(tmp_path / "v" / "20261122_093000.mp4", seconds=1, fps=5)
    site = tmp_path / "site.yaml"
    site.write_text(f"detector: {detector}\n")
    argv = ["--input", str(tmp_path / "v"), "--output", str(tmp_path / "out"), "--config"]
    assert run_cli(analyze.main, [*argv, str(site), "--model", str(tiny_model)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out" / "videos").exists()


@pytest.mark.parametrize(
    ("site", "version"),
    [
        (None, "mtcnn-"),
        ("detector: {refresh: false}", "mtcnn-"),
        ("detector: {name: yunet, min_face_px: 40}", "yunet-2023mar"),
    ],
    ids=["default-mtcnn", "mtcnn-no-refresh", "yunet"],
)
def test_each_detector_finds_the_demo_visitor(tmp_path, site, version):
    """MTCNN (the default, following the moving visitor by refresh; also detecting on every
    changed frame) and the shipped YuNet (by a site config) each find the demo clip's one
    visitor, and the videos table names the detector that did."""
    from conftest import SHIPPED_MODEL

    demo = Path(__file__).resolve().parents[1] / "demo" / "kiosk_20240501_100000.mp4"
    out = tmp_path / "out"
    argv = ["--input", str(demo), "--output", str(out), "--model", str(SHIPPED_MODEL)]
    if site:
        (tmp_path / "site.yaml").write_text(site + "\n")
        argv += ["--config", str(tmp_path / "site.yaml")]
    assert analyze.main([*argv, "--workers", "1", "--no-progress"]) == 0
    con = connect(str(out))
    (used,) = con.execute("SELECT detector_version FROM videos").fetchone()
    assert used.startswith(version), used
    (frames, gender), *rest = con.execute("SELECT frames, gender FROM visitors").fetchall()
    assert not rest and frames >= 20 and gender == "female"


def test_a_changed_file_that_cannot_be_read_is_analysed_not_fatal(tmp_path):
    """A file touched since the last run and unreadable now (moved away, permissions) must reach
    the analysis, which records it as failed; reading its fingerprint in the selection step must
    not stop the night."""
    from datetime import date

    from pipelines.inputs import needs_analysis, video_file
    from schemas.manifest import ManifestEntry

    gone = video_file(str(tmp_path / "cam" / "gone.mp4"), 2048, 1000.0)
    entry = ManifestEntry(1024, 999.0, "abc", "m1", "ok", date(2026, 11, 22), "cam")
    assert needs_analysis(gone, entry, force=False, model_version=None) == (True, "unreadable")
    same = video_file(gone.path, 1024, 999.0)
    assert needs_analysis(same, entry, force=False, model_version=None) == (False, "unchanged")


def test_a_video_whose_predictions_do_not_all_come_back_fails_rather_than_publishing_short(
    tiny_model, tmp_path, monkeypatch
):
    """Every face sent to the model must come back with its answer; where a runner loses some,
    the video is failed with the reason and no visitor of it is published."""
    from pipelines import analyse, pipeline

    def losing(sightings, predictions):
        return analyse.to_observations(sightings[1:], predictions[1:])  # one face lost per batch

    monkeypatch.setattr(pipeline, "to_observations", losing)
    demo = Path(__file__).resolve().parents[1] / "demo" / "kiosk_20240501_100000.mp4"
    (tmp_path / "v").mkdir()
    shutil.copy(demo, tmp_path / "v" / demo.name)
    assert run_job(tiny_model, tmp_path / "v", tmp_path / "out") == 1
    ((status, error, faces),) = (
        connect(str(tmp_path / "out"))
        .execute("SELECT status, error, faces_detected FROM videos")
        .fetchall()
    )
    assert status == "failed" and faces > 0
    assert error.endswith(
        f"of {faces} face predictions came back from the model: not published short"
    )
    assert connect(str(tmp_path / "out")).execute("SELECT count(*) FROM visitors").fetchall() == [
        (0,)
    ]


def test_the_worker_module_run_by_hand_says_what_to_run_instead():
    worker, repo = [sys.executable, "-m", "pipelines.runner"], Path(__file__).resolve().parents[1]
    shown = subprocess.run([*worker, "--help"], cwd=repo, capture_output=True, text=True)
    assert shown.returncode == 0 and "python -m jobs.analyze --help" in shown.stdout
    bare = subprocess.run(worker, cwd=repo, capture_output=True, text=True)
    assert (
        bare.returncode == 2
        and bare.stderr.startswith("error: ")
        and "Traceback" not in bare.stderr
    )
