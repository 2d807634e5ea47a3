"""SIGTERM is a stop, not a crash: `systemctl stop`, a scheduler's timeout and `kill PID` send
it, to the job alone or to its whole process group. The job stops its workers, releases the
output lock, prints one line and exits 143; what was committed stays and the next run does the
rest."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from videos import write_clip

from jobs import analyze
from schemas.lock import LOCK_NAME
from schemas.views import connect

REPO = Path(__file__).resolve().parents[1]


N_VIDEOS = 12  # analysed by the run that is stopped
N_EARLIER = 4  # committed to the same output by an earlier run


def _recordings(root: Path, day: str = "20261122", count: int = N_VIDEOS) -> Path:
    for i in range(count):
        write_clip(root / f"cam{i % 2}" / f"{day}_{10 + i}0000.mp4", seconds=12, fps=10)
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
    inp, out = tmp_path / "v", tmp_path / "out"
    _recordings(inp, "20261121", N_EARLIER)
    assert analyze.main(_args(tiny_model, inp, out, "1")) == 0  # the night before
    earlier = _videos(out)
    _recordings(inp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.analyze", *_args(tiny_model, inp, out, workers)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as under systemd
    )
    err_lines: list[str] = []

    def read_stderr() -> None:  # line by line while the job runs: the start line is the cue
        for line in proc.stderr:
            err_lines.append(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    # The stop lands once the run has started, while the new videos are being analysed. A run
    # commits its videos in a burst of about 0.1 s near its end (all analysed, then each
    # published), too short to aim a signal at, so what must stay is the earlier run's.
    deadline = time.time() + 120
    while time.time() < deadline and not any("INFO run " in x for x in err_lines):
        time.sleep(0.02)
    committed = len(list(out.glob("videos/**/*.parquet")))
    if to_group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    err = "".join(err_lines)
    sent = f"SIGTERM sent with {committed} of {N_EARLIER + N_VIDEOS} videos committed"
    assert proc.returncode == 143, f"{sent}, exit {proc.returncode}:\n{err[-3000:]}"
    assert err.rstrip().endswith("terminated") and "Traceback" not in err, err[-3000:]
    done = _videos(out)
    # The run's start line, one line per committed video, then the stop: no noise, no trace.
    lines = err.strip().splitlines()
    assert "INFO run " in lines[0] and lines[-1] == "terminated", err[-3000:]
    new = len(done) - N_EARLIER
    assert len(lines) - 2 <= new and all(" visitors (" in x for x in lines[1:-1]), err
    assert not (out / LOCK_NAME).exists()
    # What was committed stays, the stop came mid-run, and the next run does the rest.
    assert set(earlier) <= set(done) and 0 <= new < N_VIDEOS, sent
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*") if p.parent.name != "out")
    assert analyze.main(_args(tiny_model, inp, out, "1")) == 0
    assert [r[1] for r in _videos(out)] == ["ok"] * (N_EARLIER + N_VIDEOS)


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
