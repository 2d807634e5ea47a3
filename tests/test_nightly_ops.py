"""What running the job every night relies on besides the catch-up: the number of workers chosen
from the machine, dated log lines, and scheduler files that call the job itself."""

import logging
import re
from pathlib import Path

import pytest

from common.config import ConfigError
from jobs import analyze, cli
from pipelines import settings
from pipelines.settings import auto_workers, load_settings

GIB = 2**30
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.mark.parametrize(
    ("cores", "memory", "workers"),
    [
        (2, 24 * GIB, 1),  # the bench machine: two workers were slower there than one
        (1, 24 * GIB, 1),
        (4, 24 * GIB, 2),
        (16, 24 * GIB, 8),
        (16, 4 * GIB, 3),  # memory holds three at 1.3 GiB each, not eight
        (16, 1 * GIB, 1),  # never fewer than one
        (16, None, 8),  # memory unknown: cores decide
    ],
)
def test_auto_workers(cores, memory, workers):
    assert auto_workers(cores, memory) == workers


def test_workers_default_to_auto_and_a_number_pins_them(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "machine_capacity", lambda: (6, 2 * GIB))
    defaults = load_settings()
    assert defaults.runner.workers == "auto"
    assert defaults.runner.worker_count() == 1  # 6 cores, but memory for one
    site = tmp_path / "site.yaml"
    site.write_text("runner: {workers: 3}\n")
    assert load_settings(site).runner.worker_count() == 3


def test_auto_becomes_a_number_before_the_runner_sees_it(monkeypatch):
    monkeypatch.setattr(settings, "machine_capacity", lambda: (4, 16 * GIB))
    args, _ = analyze.parse_args(["--input", "x"])
    assert analyze.settings_for(args).runner.workers == 2
    args, _ = analyze.parse_args(["--input", "x", "--workers", "3"])
    assert analyze.settings_for(args).runner.workers == 3


def test_workers_other_than_a_number_or_auto_are_refused(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("runner: {workers: many}\n")
    with pytest.raises(ConfigError, match="runner.workers must be a whole number"):
        load_settings(site)


def test_machine_capacity_reads_this_machine():
    cores, memory = settings.machine_capacity()
    assert 1 <= cores <= 4096
    assert memory is None or 0 <= memory < 2**50


def test_log_lines_carry_the_date(monkeypatch):
    """Also where Beam's import-time note gave the root logger its default handler first."""
    root = logging.getLogger()
    plain = logging.StreamHandler()
    monkeypatch.setattr(root, "handlers", [plain])
    cli.setup_logging()
    record = logging.LogRecord("jobs.nightly", logging.INFO, __file__, 1, "nightly", None, None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO nightly", plain.format(record))


def test_the_scheduler_files_call_the_job_not_make():
    """make turns exit 1 (some inputs failed) into 2, which monitoring reads as a broken setup."""
    cron = [
        line
        for line in (DEPLOY / "cron.example").read_text().splitlines()
        if line[:1].isdigit() or line[:1] == "*"
    ]
    service = [
        line
        for line in (DEPLOY / "kiosk-nightly.service").read_text().splitlines()
        if line.startswith("ExecStart=")
    ]
    for command in cron + service:
        assert ".venv/bin/python -m jobs.nightly --input " in command, command
        assert "make " not in command, command
