"""The kiosk-day clip the gate is measured on (simulation: schedule "day", grain, fixed GOP):
visitors only in busy stretches, camera grain on every frame, a key frame every gop_s; and
clips rendered without these options keep their truth as it was."""

import csv
import json

import av
import cv2
import numpy as np
import pytest

from simulation.choreography import busy_windows
from simulation.clip_maker import render_clip
from simulation.ground_truth import truth_path_for
from simulation.photos import open_faces
from simulation.render_options import RenderOptions, kiosk_day

DAY = dict(
    width=160,
    height=96,
    fps=10.0,
    duration_s=240.0,
    schedule="day",
    busy_share=0.25,
    grain=3.0,
    gop_s=2.0,
    seed=4,
    visitors_max=2,
    walk_s=(0.5, 1.0),
    linger_s=(2.0, 4.0),
    gap_s=(0.5, 2.0),
    face_frac=(0.2, 0.3),
)


@pytest.fixture
def faces_csv(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "age", "gender"])
        for i in range(40):
            img = np.full((48, 48, 3), 30 + 5 * i, np.uint8)
            cv2.circle(img, (24, 24), 16, (90, 140, 200), -1)
            cv2.imwrite(str(folder / f"p{i}.png"), img)
            writer.writerow([f"p{i}.png", 20 + i, i % 2])
    return folder / "labels.csv"


def test_a_day_has_visitors_only_in_busy_stretches_grain_and_fixed_gops(tmp_path, faces_csv):
    options = RenderOptions(**DAY)
    truth = render_clip(tmp_path / "day.mp4", open_faces(faces_csv), options)
    windows = busy_windows(options)
    assert sum(b - a for a, b in windows) == pytest.approx(0.25 * 240)
    assert len(truth["visitors"]) >= 4
    for v in truth["visitors"]:  # each visit lies inside one busy stretch
        assert any(a <= v["appear_s"] and v["disappear_s"] <= b for a, b in windows), v
    given = truth["clip"]["options"]
    assert [given[k] for k in ("schedule", "grain", "gop_s")] == ["day", 3.0, 2.0]
    with av.open(str(tmp_path / "day.mp4")) as container:
        stream = container.streams.video[0]
        keys = [p.pts * p.time_base for p in container.demux(stream) if p.size and p.is_keyframe]
    assert [float(k) for k in keys] == [2.0 * i for i in range(120)]
    quiet = min(windows)[0] - 1.0  # a second before the first busy stretch: the empty scene
    with av.open(str(tmp_path / "day.mp4")) as container:
        frames = [f.to_ndarray(format="gray8").astype(float) for f in container.decode(video=0)]
    i = round(quiet * 10)
    assert 1.5 < np.std(frames[i + 1] - frames[i]) < 6  # fresh grain, frame to frame


def test_without_the_new_options_the_truth_lists_none_of_them(tmp_path, faces_csv):
    steady = dict(DAY, schedule="steady", grain=0.0, gop_s=None, duration_s=6.0)
    render_clip(tmp_path / "steady.mp4", open_faces(faces_csv), RenderOptions(**steady))
    options = json.loads(truth_path_for(tmp_path / "steady.mp4").read_text())["clip"]["options"]
    assert not {"schedule", "busy_share", "grain", "gop_s"} & set(options)
    assert options["duration_s"] == 6.0 and options["seed"] == 4


def test_the_benchmark_day_is_a_1080p_camera_at_4_mbit_with_2_s_gops():
    day = kiosk_day(minutes=8, seed=1)
    assert (day.width, day.height, day.fps, day.duration_s) == (1920, 1080, 30.0, 480)
    assert (day.bitrate, day.gop_s, day.schedule, day.busy_share) == (4_000_000, 2.0, "day", 0.25)
    assert day.grain > 0
    day.validate()
