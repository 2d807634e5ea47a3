"""Face-box geometry shared by the detector (stage 3), the identity sampler and the tracker
(stage 6). Here rather than in pipelines/faces/, so the tracker, the visitors and the reports
that build on them do not import the detector (ONNX Runtime, OpenCV, Beam's filesystems)."""

import math


def box_size(box: tuple[float, float, float, float]) -> float:
    """A face's size in pixels: the geometric mean of its box's width and height, never zero
    (the tracker divides by it)."""
    x1, y1, x2, y2 = box
    return math.sqrt(max(x2 - x1, 1e-3) * max(y2 - y1, 1e-3))


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 for empty ones)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
