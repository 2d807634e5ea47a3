"""Face-box geometry shared by the detector (stage 3) and the tracker (stage 6). Here rather than
in pipelines/faces/, so the tracker, the visitors and the reports that build on them do not
import the detector (ONNX Runtime, OpenCV, Beam's filesystems)."""

import math


def box_size(box: tuple[float, float, float, float]) -> float:
    """A face's size in pixels: the geometric mean of its box's width and height, never zero
    (the tracker divides by it)."""
    x1, y1, x2, y2 = box
    return math.sqrt(max(x2 - x1, 1e-3) * max(y2 - y1, 1e-3))
