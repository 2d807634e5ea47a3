"""The cheap look before the detector (pipelines/cadence.py): skip it on an empty scene that has
not changed, run it every cadence-th frame on a still scene with faces, carrying its faces."""

import numpy as np
from videos import scene

from pipelines.cadence import DetectorCadence
from pipelines.faces import Face

SIZE = (640, 360)
HEAD = (320, 180)  # where the scene's visitor has their head (videos._with_blob)


class FakeDetector:
    """Finds the scene's visitor's face: their head's skin tone on the head's row."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        row = image[HEAD[1]].astype(int)
        found = np.flatnonzero(row[:, 0] - row[:, 2] > 70)
        if found.size == 0:
            return []
        cx = float(found.mean())
        box = (cx - 45, 120.0, cx + 45, 240.0)
        landmarks = np.array(
            [[cx - 20, 160], [cx + 20, 160], [cx, 180], [cx - 15, 200], [cx + 15, 200]], np.float32
        )
        return [Face(box, 0.99, landmarks)]


def run(frames, cadence=5, min_share=0.004):
    detector, look = FakeDetector(), DetectorCadence(cadence, min_share)
    results = [look.faces(frame, detector) for frame in frames]
    return detector, look, results


def test_an_empty_still_scene_runs_the_detector_once(tmp_path):
    detector, look, results = run(scene(10, size=SIZE, grain=4.0))
    assert detector.calls == 1 and (look.runs, look.carried) == (1, 99)
    assert all(faces == [] for faces, _ in results)


def test_a_visitor_wakes_the_detector_which_then_runs_at_the_cadence_carrying_faces(tmp_path):
    frames = list(scene(6, size=SIZE, visitor=(1.0, 4.0)))  # 10 fps: visitor in frames 10-39
    detector, look, results = run(frames, cadence=5)
    ran = [i for i, (_, detected) in enumerate(results) if detected]
    # Frame 0; the arrival (10); every 5th frame while they stand (15 ... 35); the leaving (40).
    assert ran == [0, 10, 15, 20, 25, 30, 35, 40]
    assert detector.calls == len(ran) and (look.runs, look.carried) == (8, 52)
    with_faces = [i for i, (faces, _) in enumerate(results) if faces]
    assert with_faces == list(range(10, 40))  # each frame of the visit has its face
    for i in range(11, 15):  # carried: the very faces of the last run, not new detections
        assert results[i][0] is results[10][0] and results[i][1] is False


def test_a_face_that_moves_is_detected_again_at_once(tmp_path):
    frames = list(scene(2, size=SIZE, visitor=(0.0, 2.0)))
    moved = [np.roll(f, 30, axis=1) if i >= 7 else f for i, f in enumerate(frames)]
    detector, _, results = run(moved, cadence=10)
    ran = [i for i, (_, detected) in enumerate(results) if detected]
    assert ran == [0, 7, 17]  # the move at frame 7, then the cadence
    assert results[8][0][0].box[0] == results[0][0][0].box[0] + 30


def test_cadence_one_runs_the_detector_on_every_frame():
    detector, look, results = run(scene(2, size=SIZE), cadence=1)
    assert detector.calls == 20 and look.carried == 0 and all(d for _, d in results)
