"""SIGTERM is a stop, not a crash: `systemctl stop`, a scheduler's timeout and `kill PID` send
it, to the job alone or to its whole process group. The job stops its workers, releases the
output lock, prints one line and exits 143; what was committed stays and the next run does the
rest."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from videos import write_clip

from jobs import analyze
from schemas.lock import LOCK_NAME
from schemas.views import connect

REPO = Path(__file__).resolve().parents[1]


N_VIDEOS = 12


def _recordings(root: Path) -> Path:
    for i in range(N_VIDEOS):
        write_clip(root / f"cam{i % 2}" / f"20261122_{10 + i}0000.mp4", seconds=12, fps=10)
    return root


def _args(model, inp, out, workers: str) -> list[str]:
    return ["--input", str(inp), "--output", str(out), "--model", str(model), "--workers",
            workers, "--no-progress"]  # fmt: skip


def _videos(out: Path) -> list[tuple]:
    con = connect(str(out))
    return con.execute("SELECT video, status, frames_analysed FROM videos ORDER BY 1").fetchall()


@pytest.mark.parametrize(
    ("workers", "to_group"),
    [("1", False), ("2", False), ("2", True)],
    ids=["job", "parent", "group"],
)
def test_sigterm_stops_the_job_with_one_line_and_the_next_run_does_the_rest(
    tiny_model, tmp_path, workers, to_group
):
    inp = _recordings(tmp_path / "v")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.analyze", *_args(tiny_model, inp, out, workers)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as under systemd
    )
    # The stop lands while the videos are being analysed. Their results are committed in a
    # burst of about 0.1 s near the end of the run (all analysed, then each published), too
    # short to aim a signal at; the output lock is taken about 2 s before it, here and in CI.
    deadline = time.time() + 120
    while time.time() < deadline and not (out / LOCK_NAME).exists():
        time.sleep(0.02)
    time.sleep(0.5)  # past the output's set-up and the run's start line
    committed = len(list(out.glob("videos/**/*.parquet")))
    if to_group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    sent = f"SIGTERM sent with {committed} of {N_VIDEOS} videos committed"
    assert proc.returncode == 143, f"{sent}, exit {proc.returncode}:\n{err[-3000:]}"
    assert err.rstrip().endswith("terminated") and "Traceback" not in err, err[-3000:]
    done = _videos(out)
    # The run's start line, one line per committed video, then the stop: no noise, no trace.
    lines = err.strip().splitlines()
    assert "INFO run " in lines[0] and lines[-1] == "terminated", err[-3000:]
    assert len(lines) - 2 <= len(done) and all(" visitors (" in x for x in lines[1:-1]), err
    assert not (out / LOCK_NAME).exists()
    assert len(done) < N_VIDEOS, sent  # what was committed stays; the next run does the rest
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*") if p.parent.name != "out")
    assert analyze.main(_args(tiny_model, inp, out, "1")) == 0
    assert [r[1] for r in _videos(out)] == ["ok"] * N_VIDEOS


def test_a_stop_that_lands_in_a_finalizer_is_raised_again():
    """Python ignores an exception raised inside ``__del__``; a SIGTERM whose handler runs there
    (a pyarrow writer's finalizer, once in CI) must still stop the run, not let it go on."""
    from pipelines.stops import Terminated, quiet_on_interrupt

    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs here, inside the finalizer
                pass

    started = time.monotonic()
    with pytest.raises(Terminated), quiet_on_interrupt():
        Finalised()  # collected at once
        while time.monotonic() < started + 5:  # the run going on
            pass
    assert time.monotonic() - started < 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_stop_a_library_turns_into_its_own_error_is_still_the_stop():
    """DuckDB checks for signals while a query runs and raises ``RuntimeError: Query interrupted``
    in place of the SIGTERM (once in the job test above, as a traceback): the run still ends as
    a stop."""
    import threading

    import duckdb

    from pipelines.stops import Terminated, quiet_on_interrupt, stop_error

    with (
        pytest.raises(RuntimeError, match="interrupted") as caught,
        quiet_on_interrupt() as received,
    ):
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        duckdb.sql("SELECT sum(i * i) FROM range(20000000000) t(i)").fetchall()
    assert received == [signal.SIGTERM]
    assert isinstance(stop_error(caught.value, received), Terminated)
    assert stop_error(RuntimeError("a real failure"), []) is None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
