import numpy as np
import pytest

from pipelines.crops import Sighting
from pipelines.faces import Face
from pipelines.predictions import FacePrediction
from pipelines.settings import load_settings
from pipelines.tracks import Observation, iou, track_faces

SETTINGS = load_settings().tracker


def obs(frame, t, cx, cy, size=80, female=0.9, age=30.0, yaw=None, pitch=None):
    half = size / 2
    probs = np.zeros(101, np.float32)
    probs[int(age)] = 1.0
    box = (cx - half, cy - half, cx + half, cy + half)
    face = Face(box=box, score=0.99, landmarks=np.zeros((5, 2), np.float32))
    return Observation(
        Sighting("v", frame, t, face, frontalness=1.0, yaw=yaw, pitch=pitch),
        FacePrediction(age=age, age_probs=probs, gender_prob=female, extra={}),
    )


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_a_person_standing_for_a_minute_is_one_track():
    rng = np.random.default_rng(0)
    seq = [obs(i, i * 0.2, 500 + rng.normal(0, 5), 300 + rng.normal(0, 5)) for i in range(300)]
    tracks = track_faces(seq, SETTINGS)
    assert len(tracks) == 1 and len(tracks[0].observations) == 300


def test_two_people_crossing_keep_their_identities():
    seq = []
    for i in range(40):
        t = i * 0.2
        seq.append(obs(i, t, 100 + 20 * i, 300, female=0.95, age=25))  # walks right
        seq.append(obs(i, t, 900 - 20 * i, 310, female=0.05, age=60))  # walks left
    tracks = track_faces(seq, SETTINGS)
    assert len(tracks) == 2
    for track in tracks:
        genders = {round(o.gender_prob) for o in track.observations}
        assert len(genders) == 1 and len(track.observations) == 40


def test_short_gap_resumes_the_track_long_gap_starts_a_new_one():
    before = [obs(i, i * 0.2, 400, 300) for i in range(10)]
    short = [obs(20 + i, 1.8 + 1.0 + i * 0.2, 405, 300) for i in range(10)]  # gap 1.2 s
    tracks = track_faces(before + short, SETTINGS)
    assert len(tracks) == 1
    long_gap = [obs(60 + i, 1.8 + 5.0 + i * 0.2, 405, 300) for i in range(10)]
    tracks = track_faces(before + long_gap, SETTINGS)
    assert [len(t.observations) for t in tracks] == [10, 10]


def test_faces_far_apart_in_one_frame_are_two_tracks():
    seq = [obs(i, i * 0.2, 200, 300) for i in range(5)] + [
        obs(i, i * 0.2, 800, 300) for i in range(5)
    ]
    tracks = track_faces(seq, SETTINGS)
    assert sorted(len(t.observations) for t in tracks) == [5, 5]
    assert [t.track_id for t in tracks] == [1, 2]
