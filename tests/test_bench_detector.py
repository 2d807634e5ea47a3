"""jobs.dev.bench_detector: detection cost per frame, measured on frames sampled from real clips."""

import re
from pathlib import Path

import pytest

from jobs.dev import bench_detector

DEMO = Path(__file__).resolve().parents[1] / "demo" / "kiosk_20240501_100000.mp4"


def test_samples_frames_evenly_and_times_each_setting(capsys):
    assert bench_detector.main([str(DEMO), "--frames", "6", "--max-side", "640", "960"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "6 frame(s) at 1920x1080, mtcnn, 1 thread"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "max_side 640, min_face_px 60",  # min_face_px from config/analyze.yaml
        "max_side 960, min_face_px 60",
    ]
    for line in lines[1:]:
        assert re.search(r": \d+\.\d ms/frame median wall", line), line
        # Frames at 0, 1.7, ..., 8.3 s; the demo visitor is in view from 0.8 s to 9.7 s.
        assert line.endswith("5 faces >= min_score 0.7"), line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-side", "10"], "detector.max_side must be at least 32"),
        (["--frames", "0"], "--frames must be at least 1"),
        ([__file__], "not a readable video container"),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, args, message):
    assert bench_detector.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
