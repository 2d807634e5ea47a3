"""A cheap look before the detector: detect only where the picture may hold new faces.

The detector is the costliest step per analysed frame (MTCNN 17-42 ms at 1080p, ``pipelines.
faces``), and most analysed frames of a kiosk day either show an empty scene that has not
changed or the same visitors standing at the screen. Before each picked frame a thumbnail (160
pixels wide, grey, blurred: ``pipelines.gate.thumbnail``, 1-2 ms at 1080p) is compared with the
thumbnail of the last frame the detector ran on:

- the detector runs when the scene changed (``cadence_change`` of the thumbnail) where no
  visitor stands: someone may have come;
- where the change is only the visitors' own (a carried face's box changed by FACE_CHANGE_SHARE,
  the rest around them by anything: they moved, turned, gestured), a detector that can
  ``refresh`` faces (MTCNN: R-Net and O-Net on the last boxes, about 1 ms a face) follows them
  instead, where ``detector.refresh`` allows; otherwise, or when a refresh loses a face, the
  detector runs;
- an unchanged scene where the last detection found no face skips it;
- an unchanged scene with faces carries the last faces: the same boxes and landmarks (so tracks
  and dwell stay whole), the crops cut from the current frame;
- with faces in view the detector runs at least every ``cadence``-th frame whatever the look
  says, so a newcomer next to or behind a visitor waits at most that long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from pipelines.gate import changed_share, thumbnail

# 1080p averaged 12 x 12: a face of 120-250 px (a kiosk camera's) is 10-20 thumbnail pixels
# wide, enough to see it move by a fifth of its size; grain averages away.
THUMB_WIDTH = 160
# A carried face's box is looked at on its own: this share of it changed means the face moved
# or turned enough that its box and crop would be stale.
FACE_CHANGE_SHARE = 0.1
# Where a visitor's own movement shows, in face widths beside their face box and face heights
# above and below it (head, shoulders, the arms at the screen): change there is theirs, and a
# refresh follows it. Larger areas refresh more and detect less, but a newcomer inside one is
# found only at the cadence's next detection. On the benchmark's busy clip these sizes refreshed
# 85 of 300 frames and missed 1 of the 594 faces that detecting on every frame finds.
PERSON_SIDE, PERSON_ABOVE, PERSON_BELOW = 1.0, 0.5, 3.0

Faces = list
Detect = Callable[[np.ndarray], Faces]
Refresh = Callable[[np.ndarray, Faces], "Faces | None"]


class DetectorCadence:
    """Decides, frame by frame, whether to run the detector, refresh its last faces or carry
    them.

    ``cadence`` is ``detector.cadence`` (1: run it on every frame, no look at all),
    ``min_share`` ``detector.cadence_change``. ``runs``, ``refreshed`` and ``carried`` count
    the frames the detector ran on, those whose faces were refreshed and those that kept the
    last ones; ``busy_s`` is the time ``detected`` spent looking and detecting.
    """

    def __init__(self, cadence: int, min_share: float):
        self._cadence = cadence
        self._min_share = min_share
        self._reference: np.ndarray | None = None  # thumbnail of the last frame detected on
        self._last: np.ndarray | None = None  # ... of the last frame its faces were found on
        self._faces: Faces = []
        self._since = 0  # frames since the detector last ran
        self.runs = self.refreshed = self.carried = 0
        self.busy_s = 0.0

    def detected(
        self, frames: Iterable, detect: Detect, refresh: Refresh | None = None
    ) -> Iterator:
        """Each frame (a ``pipelines.frames.Frame``) with its faces, in order."""
        for frame in frames:
            started = time.perf_counter()
            faces, _ = self.faces(frame.image, detect, refresh)
            self.busy_s += time.perf_counter() - started
            yield frame, faces

    def faces(
        self, image: np.ndarray, detect: Detect, refresh: Refresh | None = None
    ) -> tuple[Faces, bool]:
        """The faces of ``image`` (RGB) and whether they were looked for in it (False:
        carried). ``refresh(image, faces)``: the faces followed into ``image``, or None."""
        thumb = thumbnail(image, THUMB_WIDTH) if self._cadence > 1 else None
        step = "detect" if thumb is None else self._step(thumb, image.shape[1], bool(refresh))
        if step == "refresh":
            found = refresh(image, self._faces)
            if found is not None:
                self._faces, self._last, self._since = found, thumb, self._since + 1
                self.refreshed += 1
                return found, True
        if step == "carry":
            self._since += 1
            self.carried += 1
            return self._faces, False
        self._faces, self._since = detect(image), 0
        self._reference = self._last = thumb
        self.runs += 1
        return self._faces, True

    def _step(self, thumb: np.ndarray, image_width: int, can_refresh: bool) -> str:
        if self._reference is None or self._reference.shape != thumb.shape:
            return "detect"
        if self._faces and self._since + 1 >= self._cadence:
            return "detect"
        scale = thumb.shape[1] / image_width
        people = _people(self._faces, scale, thumb.shape) if can_refresh else None
        if _changed_outside(thumb, self._reference, people) > self._min_share:
            return "detect"
        moved = any(
            changed_share(thumb, self._last, _box_slice(face.box, scale, thumb.shape))
            > FACE_CHANGE_SHARE
            for face in self._faces
        )
        if not moved:
            return "carry"
        return "refresh" if can_refresh else "detect"


def _changed_outside(thumb: np.ndarray, reference: np.ndarray, people: np.ndarray | None) -> float:
    """The share of the thumbnail that changed outside ``people`` (a mask; None: nowhere)."""
    if people is None or not people.any():
        return changed_share(thumb, reference)
    return changed_share(thumb, reference, ~people) * float(np.mean(~people))


def _people(faces: Faces, scale: float, shape: tuple[int, ...]) -> np.ndarray:
    """The thumbnail pixels where the visitors of ``faces`` move (PERSON_*)."""
    mask = np.zeros(shape[:2], bool)
    for face in faces:
        x1, y1, x2, y2 = face.box
        w, h = x2 - x1, y2 - y1
        around = (
            x1 - PERSON_SIDE * w,
            y1 - PERSON_ABOVE * h,
            x2 + PERSON_SIDE * w,
            y2 + PERSON_BELOW * h,
        )
        mask[_box_slice(around, scale, shape)] = True
    return mask


def _box_slice(box, scale: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The thumbnail pixels under a frame-pixel box (at least one)."""
    h, w = shape[:2]
    x1, y1 = (int(np.clip(v * scale, 0, n - 1)) for v, n in ((box[0], w), (box[1], h)))
    x2, y2 = (int(np.clip(np.ceil(v * scale), 1, n)) for v, n in ((box[2], w), (box[3], h)))
    return slice(y1, max(y2, y1 + 1)), slice(x1, max(x2, x1 + 1))
