"""A cheap look before the detector: detect only where the picture may hold new faces.

The detector is the costliest step per analysed frame (MTCNN 17-42 ms at 1080p, ``pipelines.
faces``), and most analysed frames of a kiosk day either show an empty scene that has not
changed or the same visitors standing at the screen. Before each picked frame a thumbnail (160
pixels wide, grey, blurred: ``pipelines.gate.thumbnail``, 1-2 ms at 1080p) is compared with the
thumbnail of the last frame the detector ran on:

- the detector runs when the scene changed (``cadence_change`` of the thumbnail, or
  FACE_CHANGE_SHARE of a carried face's box: a visitor came, left, moved or turned);
- an unchanged scene where the last detection found no face skips it;
- an unchanged scene with faces runs it every ``cadence``-th frame and, between runs, carries
  the last faces: the same boxes and landmarks (so tracks and dwell stay whole), the crops cut
  from the current frame.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipelines.gate import changed_share, thumbnail

# 1080p averaged 12 x 12: a face of 120-250 px (a kiosk camera's) is 10-20 thumbnail pixels
# wide, enough to see it move by a fifth of its size; grain averages away.
THUMB_WIDTH = 160
# A carried face's box is looked at on its own: this share of it changed means the face moved
# or turned enough that its box and crop would be stale.
FACE_CHANGE_SHARE = 0.1


class DetectorCadence:
    """Decides, frame by frame, whether to run the detector or carry its last faces.

    ``cadence`` is ``detector.cadence`` (1: run it on every frame, no look at all),
    ``min_share`` ``detector.cadence_change``. ``runs`` and ``carried`` count the frames the
    detector ran on and those it did not.
    """

    def __init__(self, cadence: int, min_share: float):
        self._cadence = cadence
        self._min_share = min_share
        self._reference: np.ndarray | None = None  # thumbnail of the last frame detected on
        self._faces: list = []
        self._since = 0  # frames since the detector last ran
        self.runs = self.carried = 0

    def faces(self, image: np.ndarray, detect: Callable[[np.ndarray], list]) -> tuple[list, bool]:
        """The faces of ``image`` (RGB) and whether the detector found them (False: carried)."""
        thumb = thumbnail(image, THUMB_WIDTH) if self._cadence > 1 else None
        if thumb is None or self._due(thumb, image.shape[1]):
            self._faces, self._reference, self._since = detect(image), thumb, 0
            self.runs += 1
            return self._faces, True
        self._since += 1
        self.carried += 1
        return self._faces, False

    def _due(self, thumb: np.ndarray, image_width: int) -> bool:
        if self._reference is None or self._reference.shape != thumb.shape:
            return True
        if self._faces and self._since + 1 >= self._cadence:
            return True
        if changed_share(thumb, self._reference) > self._min_share:
            return True
        scale = thumb.shape[1] / image_width
        return any(
            changed_share(thumb, self._reference, _box_slice(face.box, scale, thumb.shape))
            > FACE_CHANGE_SHARE
            for face in self._faces
        )


def _box_slice(box, scale: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The thumbnail pixels under a frame-pixel box (at least one)."""
    h, w = shape[:2]
    x1, y1 = (int(np.clip(v * scale, 0, n - 1)) for v, n in ((box[0], w), (box[1], h)))
    x2, y2 = (int(np.clip(np.ceil(v * scale), 1, n)) for v, n in ((box[2], w), (box[3], h)))
    return slice(y1, max(y2, y1 + 1)), slice(x1, max(x2, x1 + 1))
