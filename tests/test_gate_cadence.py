"""The cheap look before the detector (pipelines/cadence.py): skip it on an empty scene that has
not changed, run it every cadence-th frame on a still scene with faces, carrying its faces, and
refresh the faces of visitors who move while nothing changes elsewhere."""

import numpy as np
from videos import scene

from pipelines.cadence import DetectorCadence, _holding_faces
from pipelines.faces import Face

SIZE = (640, 360)
HEAD = (320, 180)  # where the scene's visitor has their head (videos._with_blob)


class FakeDetector:
    """Finds one face: the skin-toned head (red far above blue) wherever it is in the image it
    is given, which may be a part of the frame; records the sizes it was given."""

    def __init__(self):
        self.calls = 0
        self.shapes = []

    def __call__(self, image):
        self.calls += 1
        self.shapes.append(image.shape[:2])
        pixels = image.astype(int)
        ys, xs = np.nonzero(pixels[..., 0] - pixels[..., 2] > 70)
        if xs.size == 0:
            return []
        cx, cy = float(xs.mean()), float(ys.mean())
        box = (cx - 45, cy - 60, cx + 45, cy + 60)
        landmarks = np.array(
            [
                [cx - 20, cy - 20],
                [cx + 20, cy - 20],
                [cx, cy],
                [cx - 15, cy + 20],
                [cx + 15, cy + 20],
            ],
            np.float32,
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
    # Frame 0; the arrival (10: in the patch that changed); every 5th frame while they stand
    # (15 ... 35); the leaving (40: the change is at their face, so the whole frame).
    assert ran == [0, 10, 15, 20, 25, 30, 35, 40]
    assert detector.calls == len(ran) and (look.runs, look.partial, look.carried) == (7, 1, 52)
    assert detector.shapes[1] != (SIZE[1], SIZE[0])
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


def test_change_away_from_the_visitors_is_searched_alone_while_they_are_refreshed():
    frames = [person(300)] * 3 + [person(310, stranger=True)] * 2
    detector = Refresher()
    look, _ = follow(frames, detector)
    assert (detector.calls, detector.refreshes) == (2, 1)
    assert (look.runs, look.partial, look.refreshed, look.carried) == (1, 1, 0, 3)
    height, width = detector.shapes[1]  # the stranger's corner and its margin, not the frame
    assert height * width < 0.25 * SIZE[0] * SIZE[1]


def newcomer(frames: int, stay_x: int = 150, from_x: int = 560) -> list[np.ndarray]:
    """A visitor standing at ``stay_x``; a second one walks in from ``from_x`` (right edge)
    towards the middle, 20 px a frame."""
    out = []
    for i in range(frames):
        image = person(stay_x)
        if i >= 3:
            cx = from_x - 20 * (i - 3)
            image[120:240, cx - 45 : cx + 45] = (200, 150, 120)
            image[240:360, cx - 90 : cx + 90] = (60, 60, 160)
        out.append(image)
    return out


class TwoFaces(Refresher):
    """Finds every skin-toned head (columns of skin split by gaps) in the image it is given."""

    def __call__(self, image):
        self.calls += 1
        self.shapes.append(image.shape[:2])
        pixels = image.astype(int)
        columns = np.flatnonzero((pixels[..., 0] - pixels[..., 2] > 70).any(axis=0))
        faces = []
        for run in (
            np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1) if columns.size else []
        ):
            part = image[:, run[0] : run[-1] + 1]
            for face in FakeDetector.__call__(FakeDetector(), part):
                faces.append(
                    Face(
                        (face.box[0] + run[0], face.box[1], face.box[2] + run[0], face.box[3]),
                        face.score,
                        face.landmarks + np.array([run[0], 0], np.float32),
                    )
                )
        return faces

    def refresh(self, image, faces):
        self.refreshes += 1
        return faces  # the standing visitor does not move in these frames


def test_a_newcomer_is_found_in_the_patch_that_changed_in_frame_pixels():
    frames = newcomer(6)
    detector = TwoFaces()
    look, results = follow(frames, detector, cadence=10)
    faces, detected = results[3]
    assert detected and sorted(round(f.box[0], 1) for f in faces) == [104.5, 514.5]
    assert detector.shapes[1] != (SIZE[1], SIZE[0])  # a patch, not the frame
    assert look.runs == 1 and look.partial >= 1
    assert all(len(faces) == 2 for faces, _ in results[3:])


def test_change_over_most_of_the_frame_runs_the_whole_detector():
    shutter = person(150)
    shutter[:, 340:] = 20  # a shutter comes down over the right half
    look, _ = follow([person(150)] * 2 + [shutter] * 2, Refresher())
    assert (look.runs, look.partial) == (2, 0)


def test_a_patch_that_touches_a_face_is_grown_to_hold_all_of_it():
    face = Face((100.0, 100.0, 160.0, 170.0), 0.99, np.zeros((5, 2), np.float32))
    elsewhere = Face((400.0, 100.0, 460.0, 170.0), 0.99, np.zeros((5, 2), np.float32))
    grown = _holding_faces((150.0, 50.0, 300.0, 300.0), [face, elsewhere])
    # All of the face it touched and half its size around it (70 px: 35 above and below),
    # not the other face.
    assert grown == (70.0, 50.0, 300.0, 300.0)
    assert _holding_faces((150.0, 120.0, 300.0, 140.0), [face]) == (70.0, 65.0, 300.0, 205.0)


def two_people(second_x: int) -> np.ndarray:
    """Visitors side by side: one at x 150, the other at ``second_x`` (the newcomer's look)."""
    image = person(150)
    image[120:240, second_x - 45 : second_x + 45] = (200, 150, 120)
    image[240:360, second_x - 90 : second_x + 90] = (60, 60, 160)
    return image


class MissesInPatches(TwoFaces):
    """Finds faces in the whole frame only, as a detector may miss a face in a part of the
    frame (cut tight, turned); refresh follows the visitor left of x 200 and loses the other."""

    def __call__(self, image):
        return super().__call__(image) if image.shape[:2] == (SIZE[1], SIZE[0]) else []

    def refresh(self, image, faces):
        self.refreshes += 1
        return None if any(f.box[0] > 200 for f in faces) else list(faces)


def test_a_followed_face_the_search_around_a_lost_one_misses_is_kept():
    frames = [two_people(320)] * 3 + [two_people(330)] * 3
    detector = MissesInPatches()
    look, results = follow(frames, detector, cadence=10)
    # Frame 3: the right visitor moved, refresh lost them, and the search around them (which
    # holds the left visitor's face too) found nothing: the left visitor is kept. Frame 4:
    # the lost visitor's change since the last whole look is searched once more.
    assert (look.runs, look.partial) == (1, 2)
    assert [len(faces) for faces, _ in results] == [2, 2, 2, 1, 1, 1]
    assert all(any(abs(f.box[0] - 104.5) < 1 for f in faces) for faces, _ in results)


def test_without_refresh_a_scene_with_faces_is_searched_whole():
    beside = person(300)
    beside[120:240, 360:400] = 20  # right beside the face, with no refresh to follow it
    detector, look, results = run([person(300)] * 2 + [beside] * 2)
    assert (look.runs, look.partial) == (2, 0)
