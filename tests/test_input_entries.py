"""Entries of an input folder that are not plain video files: each ends as a failed video with
a reason that says what it is, the other videos are analysed, and each failure is reported
once."""

import os
import time

from videos import write_clip

from common.config import ConfigError, read_yaml
from jobs import analyze
from schemas.views import connect


def test_a_fifo_and_a_broken_link_are_failed_videos_with_their_reason(tiny_model, tmp_path, capsys):
    cam = tmp_path / "v" / "cam"
    write_clip(cam / "20261122_100000.mp4", seconds=1, fps=10)
    os.mkfifo(cam / "20261122_110000.mp4")  # would block a reader forever
    (cam / "20261122_120000.mp4").symlink_to(tmp_path / "gone" / "recording.mp4")
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "v"), "--output", str(out), "--model", str(tiny_model)]
    assert analyze.main([*argv, "--workers", "1", "--no-progress"]) == 1
    rows = connect(str(out)).execute(
        "SELECT regexp_extract(video, '[^/]+$'), status, error, CAST(date AS VARCHAR) "
        "FROM videos ORDER BY 1"
    )
    assert rows.fetchall() == [
        ("20261122_100000.mp4", "ok", None, "2026-11-22"),
        ("20261122_110000.mp4", "failed", "not a regular file (a named pipe)", "2026-11-22"),
        (
            "20261122_120000.mp4",
            "failed",
            f"broken symbolic link (its target {tmp_path / 'gone' / 'recording.mp4'} is gone)",
            "2026-11-22",  # dated by its name, so it lands in the night it belongs to
        ),
    ]
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    for reason in ("not a regular file (a named pipe)", "broken symbolic link"):
        assert printed.count(reason) == 1, printed  # once, in the summary


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    """A 'billion laughs' file of a few hundred bytes would expand to gigabytes; it is refused
    at once with one line."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, 9):
        prev, name = chr(ord("a") + k - 1), chr(ord("a") + k)
        lines.append(f"{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    bomb = tmp_path / "site.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1000
    started = time.perf_counter()
    try:
        read_yaml(bomb)
    except ConfigError as e:
        assert "aliases" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("the alias bomb was read")
    assert time.perf_counter() - started < 2
