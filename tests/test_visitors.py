import dataclasses

import numpy as np
import pytest
from test_tracks import obs

from pipelines.settings import load_settings
from pipelines.tracks import Track
from pipelines.visitors import age_band, aggregate, frames_needed

SETTINGS = load_settings().visitors
ATTENTION = load_settings().attention
# The weighting tests use three frames; the shipped minimum track length is tested on its own.
THREE_FRAMES = dataclasses.replace(SETTINGS, min_frames=3)


def track_of(observations):
    track = Track(track_id=7)
    for o in observations:
        track.add(o)
    return track


def test_age_bands():
    edges = (10, 20, 30, 40, 50, 60)
    assert [age_band(a, edges) for a in (0, 9.9, 10, 35, 59.99, 60, 99)] == [
        "0-9",
        "0-9",
        "10-19",
        "30-39",
        "50-59",
        "60+",
        "60+",
    ]


def test_weighted_age_and_gender_favour_the_bigger_face():
    small = obs(0, 0.0, 300, 300, size=50, female=0.2, age=20)
    big = [obs(i, i * 0.2, 300, 300, size=150, female=0.8, age=40) for i in (1, 2)]
    visitor = aggregate(track_of([small, *big]), THREE_FRAMES, frame_interval_s=0.2)
    # weights 50 : 150 : 150 (score and frontalness equal)
    assert visitor.age == pytest.approx((20 * 50 + 40 * 300) / 350, abs=1e-4)
    assert visitor.gender_score == pytest.approx((0.2 * 50 + 0.8 * 300) / 350, abs=1e-6)
    assert visitor.gender == "female" and visitor.age_band == "30-39"
    assert visitor.age_std == pytest.approx(
        np.sqrt((50 * (20 - visitor.age) ** 2 + 300 * (40 - visitor.age) ** 2) / 350), abs=1e-3
    )
    assert visitor.frames == 3 and visitor.face_px == pytest.approx(150)
    assert visitor.start_s == 0.0 and visitor.end_s == pytest.approx(0.4)
    assert visitor.dwell_s == 0.6  # exactly: 0.4 + 0.2 is 0.6000000000000001 in floats


def test_short_or_small_tracks_are_dropped():
    assert SETTINGS.min_frames == 5
    short = [obs(i, i * 0.2, 300, 300) for i in range(4)]
    assert aggregate(track_of(short), SETTINGS, 0.2) is None
    assert aggregate(track_of([*short, obs(4, 0.8, 300, 300)]), SETTINGS, 0.2) is not None
    tiny = [obs(i, i * 0.2, 300, 300, size=20) for i in range(10)]
    assert aggregate(track_of(tiny), SETTINGS, 0.2) is None


def test_a_slow_source_needs_the_same_span_of_video_not_the_same_frame_count():
    """min_frames 5 at 5 fps is one second: a 1 fps recording shows a one-second visitor in
    one frame, so it needs two; 2 fps, two; a source faster than the picking rate, five."""
    assert [frames_needed(SETTINGS, 0.2, i) for i in (0.04, 0.2, 0.25, 0.5, 1.0)] == [5, 5, 4, 2, 2]
    slow = [obs(i, float(i), 300, 300) for i in range(4)]  # four frames at 1 fps
    assert aggregate(track_of(slow), SETTINGS, 1.0) is None  # the 5 fps rule alone drops it
    visitor = aggregate(track_of(slow), SETTINGS, 1.0, frames_needed(SETTINGS, 0.2, 1.0))
    assert visitor is not None and visitor.dwell_s == pytest.approx(4.0)


def posed(poses, t0=0.0, interval=0.2):
    """A track of one frame per ``interval`` with these (yaw, pitch) head poses."""
    frames = [obs(i, t0 + i * interval, 300, 300, yaw=y, pitch=p) for i, (y, p) in enumerate(poses)]
    return track_of(frames)


def test_attention_counts_the_frames_facing_the_camera_as_dwell_counts_frames():
    assert (ATTENTION.max_yaw_deg, ATTENTION.max_pitch_deg, ATTENTION.min_watch_s) == (20, 25, 1.0)
    facing = [(0, 0), (10, -5), (-19, 3), (20, 25), (5, 5), (0, -10)]  # limits included
    away = [(21, 0), (-60, 5), (0, -30), (None, None)]  # turned, turned, looking down, no pose
    visitor = aggregate(posed(facing + away), SETTINGS, 0.2, attention=ATTENTION)
    assert visitor.dwell_s == 2.0 and visitor.attention_s == 1.2  # 6 frames x 0.2 s, exactly
    assert visitor.watcher is True
    visitor = aggregate(posed(facing[:4] + away), SETTINGS, 0.2, attention=ATTENTION)
    assert (visitor.dwell_s, visitor.attention_s, visitor.watcher) == (1.6, 0.8, False)
    strict = dataclasses.replace(ATTENTION, max_yaw_deg=9)
    visitor = aggregate(posed(facing + away), SETTINGS, 0.2, attention=strict)
    assert visitor.attention_s == 0.6  # (0, 0), (5, 5), (0, -10)


def test_a_frontal_visitor_attends_all_of_the_time_except_frames_missed():
    """Dwell counts a gap the tracker bridged (a head turned too far to be detected); attention
    counts only the frames that faced the camera."""
    steady = aggregate(posed([(3, -4)] * 10), SETTINGS, 0.2, attention=ATTENTION)
    assert steady.attention_s == steady.dwell_s == 2.0
    first, second = posed([(0, 0)] * 5), posed([(0, 0)] * 5, t0=2.0)
    gap = track_of(first.observations + second.observations)  # unseen from 1.0 to 2.0 s
    visitor = aggregate(gap, SETTINGS, 0.2, attention=ATTENTION)
    assert (visitor.dwell_s, visitor.attention_s) == (3.0, 2.0)
    unknown = aggregate(posed([(0, 0)] * 5), SETTINGS, 0.2)  # no attention settings given
    assert unknown.attention_s is None and unknown.watcher is None
