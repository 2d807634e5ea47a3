"""The cheap look before the detector (pipelines/cadence.py): skip it on an empty scene that has
not changed, run it every cadence-th frame on a still scene with faces, carrying its faces, and
refresh the faces of visitors who move while nothing changes elsewhere."""

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


# ---------------------------------------------------------------- refreshing the last faces


def person(cx: int, stranger: bool = False) -> np.ndarray:
    """A flat room with one visitor (head at HEAD's row, body below) centred at ``cx``, and a
    dark stranger in the far corner if asked."""
    image = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
    image[120:240, cx - 45 : cx + 45] = (200, 150, 120)
    image[240:360, cx - 90 : cx + 90] = (60, 60, 160)
    if stranger:
        image[10:90, 540:620] = 20
    return image


class Refresher(FakeDetector):
    """Refreshes by finding the face again (or loses it: ``lose``), counting refreshes."""

    def __init__(self, lose: bool = False):
        super().__init__()
        self.lose, self.refreshes = lose, 0

    def refresh(self, image, faces):
        self.refreshes += 1
        return None if self.lose else FakeDetector.__call__(FakeDetector(), image)


def follow(frames, detector, cadence=5):
    look = DetectorCadence(cadence, 0.004)
    results = [look.faces(frame, detector, detector.refresh) for frame in frames]
    return look, results


def test_a_visitor_who_moves_is_followed_by_refresh_not_detection():
    frames = [person(300)] * 3 + [person(310)] * 2
    detector = Refresher()
    look, results = follow(frames, detector)
    assert (detector.calls, detector.refreshes) == (1, 1)
    assert (look.runs, look.refreshed, look.carried) == (1, 1, 3)
    assert results[3][0][0].box[0] == results[0][0][0].box[0] + 10 and results[3][1]
    assert results[4][0] is results[3][0]  # then carried


def test_change_away_from_the_visitors_runs_the_detector():
    frames = [person(300)] * 3 + [person(310, stranger=True)] * 2
    detector = Refresher()
    look, _ = follow(frames, detector)
    assert (detector.calls, detector.refreshes) == (2, 0)


def test_a_face_the_refresh_loses_is_detected_again():
    frames = [person(300)] * 3 + [person(310)] * 2
    detector = Refresher(lose=True)
    look, results = follow(frames, detector)
    assert (detector.calls, detector.refreshes) == (2, 1)
    assert results[3][0][0].box[0] == results[0][0][0].box[0] + 10


def test_refreshes_never_put_off_the_cadences_detection():
    frames = [person(300 + 10 * i) for i in range(12)]  # moving on every frame
    detector = Refresher()
    look, results = follow(frames, detector, cadence=4)
    assert [faces[0].box[0] for faces, _ in results] == [254.5 + 10 * i for i in range(12)]
    assert (look.runs, look.refreshed, look.carried) == (3, 9, 0)  # detected on 0, 4 and 8
