"""jobs.nightly's catch-up: which days a run analyses, and the state file that remembers the last
completed day (OUTPUT/.nightly.json)."""

import json
import logging
from datetime import date

import pytest
from videos import write_clip

from jobs import nightly
from jobs.cli import run as run_cli
from schemas.views import connect

TODAY = date(2026, 11, 25)  # so yesterday is 2026-11-24


@pytest.fixture()
def recordings(tmp_path, monkeypatch):
    """One short clip a day from 2026-11-21 to today, named by their start time."""
    monkeypatch.setattr(nightly, "today", lambda: TODAY)
    root = tmp_path / "v"
    for day in range(21, 26):
        write_clip(root / "lobby" / f"202611{day}_080000.mp4", seconds=1, fps=10)
    return root


def run_nightly(tiny_model, root, out, *analysis) -> int:
    argv = ["--input", str(root), "--output", str(out), "--format", "csv", "--"]
    argv += ["--model", str(tiny_model), "--workers", "1", "--no-progress", *analysis]
    return run_cli(nightly.main, argv)


def analysed(out) -> list[str]:
    rows = connect(str(out)).execute("SELECT CAST(date AS VARCHAR) FROM videos ORDER BY 1")
    return [r[0] for r in rows.fetchall()]


def last_day(out) -> str:
    return json.loads((out / ".nightly.json").read_text())["last_day"]


def set_last_day(out, day: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / ".nightly.json").write_text(json.dumps({"last_day": day}))


def daily_summary_days(printed: str) -> list[str]:
    """The dates in the daily_summary CSV the run printed."""
    section = printed.split("# daily_summary\n", 1)[1].split("\n\n", 1)[0]
    return sorted({line[:10] for line in section.splitlines() if line[:4] == "2026"})


def test_first_run_analyses_yesterday_and_records_it(tiny_model, recordings, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_nightly(tiny_model, recordings, out) == 0
    assert analysed(out) == ["2026-11-24"]
    assert last_day(out) == "2026-11-24"
    assert daily_summary_days(capsys.readouterr().out) == ["2026-11-24"]


def test_two_missed_nights_are_both_analysed_and_reported(tiny_model, recordings, tmp_path, capsys):
    out = tmp_path / "out"
    set_last_day(out, "2026-11-22")  # the runs of the 24th and 25th never happened
    assert run_nightly(tiny_model, recordings, out) == 0
    assert analysed(out) == ["2026-11-23", "2026-11-24"]
    assert last_day(out) == "2026-11-24"
    assert daily_summary_days(capsys.readouterr().out) == ["2026-11-23", "2026-11-24"]


def test_a_failed_analysis_leaves_the_state_for_the_next_run(
    tiny_model, recordings, tmp_path, capsys
):
    out = tmp_path / "out"
    set_last_day(out, "2026-11-22")
    assert run_nightly(tiny_model, recordings, out, "--fps", "0") == 2
    assert capsys.readouterr().err.startswith("error: --fps must be a positive number")
    assert last_day(out) == "2026-11-22"
    assert run_nightly(tiny_model, recordings, out) == 0  # the next night does both days
    assert analysed(out) == ["2026-11-23", "2026-11-24"]
    assert last_day(out) == "2026-11-24"


def test_an_explicit_date_leaves_the_state(tiny_model, recordings, tmp_path):
    out = tmp_path / "out"
    set_last_day(out, "2026-11-22")
    argv = ["--input", str(recordings), "--output", str(out), "--date", "2026-11-21", "--"]
    argv += ["--model", str(tiny_model), "--workers", "1", "--no-progress"]
    assert run_cli(nightly.main, argv) == 0
    assert analysed(out) == ["2026-11-21"]
    assert last_day(out) == "2026-11-22"


def test_a_broken_state_file_stops_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nightly, "today", lambda: TODAY)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".nightly.json").write_text("{not json")
    argv = ["--input", str(tmp_path), "--output", str(out)]
    assert run_cli(nightly.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / '.nightly.json'} is not a nightly state file")
    assert err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == [".nightly.json"]


@pytest.mark.parametrize(
    ("last_done", "first", "count"),
    [
        (None, date(2026, 11, 24), 1),  # first run: yesterday
        (date(2026, 11, 23), date(2026, 11, 24), 1),  # the usual night
        (date(2026, 11, 24), date(2026, 11, 24), 1),  # run twice in a day: yesterday again
        (date(2026, 12, 1), date(2026, 11, 24), 1),  # a state from a clock set ahead
        (date(2026, 11, 20), date(2026, 11, 21), 4),
        (date(2026, 10, 24), date(2026, 10, 25), 31),  # exactly the cap
    ],
)
def test_days_to_analyse(last_done, first, count):
    days = nightly.days_to_analyse(last_done, date(2026, 11, 24))
    assert (days[0], days[-1], len(days)) == (first, date(2026, 11, 24), count)


def test_a_long_gap_is_cut_to_its_latest_days_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="jobs.nightly"):
        days = nightly.days_to_analyse(date(2026, 9, 1), date(2026, 11, 24))
    assert (days[0], days[-1], len(days)) == (date(2026, 10, 25), date(2026, 11, 24), 31)
    assert caplog.messages == [
        "84 days since the last nightly run (2026-09-01): analysing the latest 31 from "
        "2026-10-25; the 53 days 2026-09-02 to 2026-10-24 stay unanalysed "
        "(python -m jobs.nightly --date DAY does one)"
    ]


def test_a_state_that_cannot_be_written_only_warns(tmp_path, caplog):
    """The analysis is committed by then; the next run, given the same days, finds them done."""
    missing = tmp_path / "gone"
    with caplog.at_level(logging.WARNING, logger="jobs.nightly"):
        nightly.write_last_day(str(missing), date(2026, 11, 24))
    assert not missing.exists()
    assert caplog.messages[0].startswith(
        f"cannot record 2026-11-24 as done in {missing / '.nightly.json'} ("
    )
    assert caplog.messages[0].endswith("): the next run redoes it")
