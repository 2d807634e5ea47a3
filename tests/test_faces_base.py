"""pipelines.faces.base: the pieces every detector shares, on hand-made inputs."""

import numpy as np
import pytest

from pipelines.faces import Face, FaceDetector, face_on_chip, nms, working_image
from pipelines.faces.base import checked_image, faces_from


def points(k: float) -> np.ndarray:
    """Five landmarks all at (k, k), so a face can be told by them after sorting."""
    return np.full((5, 2), k, np.float32)


def test_faces_from_clips_boxes_to_the_image_and_drops_empty_ones():
    boxes = np.array(
        [
            [-5.5, -3.0, 50.0, 60.0],  # over the top-left and bottom-right edges: clipped
            [45.0, 10.0, 70.0, 20.0],  # right of a 40 px wide image: empty once clipped
            [10.0, 12.0, 10.0, 20.0],  # zero width
            [12.25, 5.0, 30.0, 25.5],  # inside: as it is
        ]
    )
    faces = faces_from(
        (30, 40, 3), boxes, np.array([0.9, 0.8, 0.7, 0.6]), [points(k) for k in range(4)]
    )
    assert [f.box for f in faces] == [(0.0, 0.0, 40.0, 30.0), (12.25, 5.0, 30.0, 25.5)]
    assert [f.score for f in faces] == [pytest.approx(0.9), pytest.approx(0.6)]
    assert all(type(v) is float for f in faces for v in (*f.box, f.score))
    np.testing.assert_array_equal(faces[1].landmarks, points(3))  # landmarks pass unchanged


def test_faces_from_sorts_best_first_keeping_ties_in_order():
    boxes = np.tile(
        [0.0, 0.0, 10.0, 10.0, 0.0], (4, 1)
    )  # a fifth column (MTCNN's score) is ignored
    faces = faces_from(
        (20, 20), boxes, np.array([0.5, 0.9, 0.7, 0.9]), [points(k) for k in range(4)]
    )
    assert [f.score for f in faces] == [0.9, 0.9, 0.7, 0.5]
    assert [float(f.landmarks[0, 0]) for f in faces] == [1.0, 3.0, 2.0, 0.0]


def test_faces_from_size_filter_only_when_asked():
    boxes = np.array([[0.0, 0.0, 10.0, 40.0], [0.0, 0.0, 30.0, 30.0]])  # sizes 20 and 30 px
    scores, landmarks = np.array([0.9, 0.8]), [points(0), points(1)]
    assert len(faces_from((100, 100), boxes, scores, landmarks)) == 2  # MTCNN: no filter
    assert [f.size for f in faces_from((100, 100), boxes, scores, landmarks, 20)] == [20, 30]
    assert [f.size for f in faces_from((100, 100), boxes, scores, landmarks, 20.5)] == [30]
    # the size that counts is the clipped box's: 30x30 cut to 30x15 is 21.2 px
    assert faces_from((15, 100), boxes[1:], scores[1:], landmarks[1:], 22) == []
    assert faces_from((20, 20), np.empty((0, 4)), np.empty(0), np.empty((0, 5, 2))) == []


def test_checked_image():
    image = np.zeros((20, 30, 3), np.uint8)
    assert checked_image(image, 12) is image  # already right: no copy
    assert checked_image(image, 21) is None  # a side under the network's window
    for bad in (np.zeros((20, 30), np.uint8), np.zeros((20, 30, 4), np.uint8), [[[0, 0, 0]]]):
        with pytest.raises(ValueError, match=r"RGB uint8 image of shape \(H, W, 3\)"):
            checked_image(bad, 1)
    floats = np.array([[[-3.0, 127.9, 300.0]]])
    out = checked_image(floats, 1)
    assert out.dtype == np.uint8 and out.tolist() == [[[0, 127, 255]]]
    view = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)[:, ::-1]
    out = checked_image(view, 1)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, view)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 5, 5]], float)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]  # IoU(0, 1) = 0.82; box 3 is inside 0
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [1, 2]  # 3 lies within 1 by 0.8
    assert nms(np.empty((0, 4)), np.empty(0), 0.5).tolist() == []


def test_working_image_and_its_ratios():
    image = np.zeros((1080, 1920, 3), np.uint8)
    assert working_image(image, None)[0] is image
    assert working_image(image, 1920)[1:] == (1.0, 1.0)
    work, fx, fy = working_image(image, 640)
    assert work.shape == (360, 640, 3) and (fx, fy) == (1 / 3, 1 / 3)
    work, fx, fy = working_image(np.zeros((10, 1000, 3), np.uint8), 100, min_side=12)
    assert work.shape == (12, 100, 3) and (fx, fy) == (0.1, 1.2)


class FixedDetector:
    """Gives the same faces for any image, as a detector would for the padded chip."""

    version = "fixed"

    def __init__(self, faces):
        self.faces = faces

    def detect(self, image):
        self.shape = image.shape
        return self.faces


def test_face_on_chip_takes_the_central_one_of_the_three_best():
    def face(x, score):
        return Face(box=(x, 40.0, x + 20.0, 60.0), score=score, landmarks=points(x))

    central, edge = face(40.0, 0.8), face(0.0, 0.95)
    lesser = Face(box=(40.0, 50.0, 60.0, 70.0), score=0.5, landmarks=points(0))  # dead centre
    detector = FixedDetector([edge, central, face(90.0, 0.9), lesser])
    assert isinstance(detector, FaceDetector)
    padded, found, offset = face_on_chip(detector, np.zeros((80, 60, 3), np.uint8))
    assert (offset, padded.shape, detector.shape) == (20, (120, 100, 3), (120, 100, 3))
    assert found is central  # the nearest to the centre (50, 60) among the three best
    assert face_on_chip(FixedDetector([]), np.zeros((80, 60, 3), np.uint8))[1] is None
