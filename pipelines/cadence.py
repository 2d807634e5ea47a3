"""A cheap look before the detector: detect only where the picture may hold new faces.

The detector is the costliest step per analysed frame (MTCNN 17-42 ms at 1080p, ``pipelines.
faces``), and most analysed frames of a kiosk day either show an empty scene that has not
changed or the same visitors standing at the screen. Before each picked frame a thumbnail (160
pixels wide, grey, blurred: ``pipelines.gate.thumbnail``, 1-3 ms at 1080p, made in the decoding
thread by ``thumbnails``) is compared with the thumbnail of the last frame looked at:

- an unchanged scene where the last look found no face skips the detector;
- an unchanged scene with faces carries the last faces: the same boxes and landmarks (so tracks
  and dwell stay whole), the crops cut from the current frame;
- where the visitors' own faces or surroundings changed (a face box by FACE_CHANGE_SHARE, the
  area around it by anything: they moved, turned, gestured), a detector that can ``refresh``
  faces (MTCNN: R-Net and O-Net on the last boxes, about 1 ms a face) follows them, where
  ``detector.refresh`` allows; around a face the refresh loses, the detector looks again;
- where the scene changed away from the visitors, the detector looks only at the patches that
  changed (each grown to hold any face it touches), since a face that is new since the last look
  can only be where the picture changed; beyond REGION_MAX_SHARE of the frame, at all of it;
- with faces in view the detector runs on the whole frame at least every ``cadence``-th frame
  whatever the look says, so a newcomer next to or behind a visitor waits at most that long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

import cv2
import numpy as np

from pipelines.gate import changed_pixels, changed_share, thumbnail

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

# The detector looks at a changed patch of the frame with this margin around it, in thumbnail
# pixels (12 are 144 px at 1080p, more than half a kiosk face): a face whose head moved is in
# the patch, and the margin holds the rest of it. Larger margins look at more of the frame.
REGION_MARGIN = 12
# Beyond this share of the frame the patches are not worth cutting out: the whole frame is
# searched. On the busy benchmark clip 97 of 300 frames were looked at in patches (174 looks,
# 16 % of the frame each on average, 10 ms against 29 ms for a whole frame), and the whole-frame
# looks fell from 136 to 59 with the same faces found (593, one moved between two frames).
REGION_MAX_SHARE = 0.5
# A patch that touches a face in view is grown to hold it and this share of its size on each
# side, so the detector sees the face with its surroundings and finds it again.
HOLD_MARGIN = 0.5

Faces = list
Detect = Callable[[np.ndarray], Faces]
Refresh = Callable[[np.ndarray, Faces], "Faces | None"]


class DetectorCadence:
    """Decides, frame by frame, whether to run the detector on the whole frame or on the
    patches that changed, refresh its last faces or carry them.

    ``cadence`` is ``detector.cadence`` (1: run it on every frame, no look at all),
    ``min_share`` ``detector.cadence_change``. ``runs``, ``partial``, ``refreshed`` and
    ``carried`` count the frames the detector ran on whole, those it looked at in part, those
    whose faces were refreshed and those that kept the last ones; ``busy_s`` is the time
    ``detected`` spent looking and detecting.
    """

    def __init__(self, cadence: int, min_share: float):
        self._cadence = cadence
        self._min_share = min_share
        self._reference: np.ndarray | None = None  # thumbnail of the last frame detected on
        self._last: np.ndarray | None = None  # ... of the last frame its faces were found on
        self._faces: Faces = []
        self._since = 0  # frames since the detector last ran
        self._scale = 1.0  # thumbnail pixels per frame pixel
        self.runs = self.refreshed = self.carried = self.partial = 0
        self.busy_s = 0.0

    def thumbnails(self, frames: Iterable) -> Iterator[tuple]:
        """Each frame (a ``pipelines.frames.Frame``) with the thumbnail its look needs (None
        with a cadence of 1). Run where the frames are decoded: that thread has time to spare
        on a busy scene, the detector's has none (1-3 ms a 1080p frame)."""
        for frame in frames:
            yield frame, thumbnail(frame.image, THUMB_WIDTH) if self._cadence > 1 else None

    def detected(
        self, frames: Iterable[tuple], detect: Detect, refresh: Refresh | None = None
    ) -> Iterator:
        """Each frame with its faces, in order, from ``thumbnails``' pairs."""
        for frame, thumb in frames:
            started = time.perf_counter()
            faces, _ = self.faces(frame.image, detect, refresh, thumb)
            self.busy_s += time.perf_counter() - started
            yield frame, faces

    def faces(
        self, image: np.ndarray, detect: Detect, refresh: Refresh | None = None, thumb=None
    ) -> tuple[Faces, bool]:
        """The faces of ``image`` (RGB) and whether they were looked for in it (False:
        carried). ``refresh(image, faces)``: the faces followed into ``image``, or None.
        ``thumb``: the image's thumbnail if ``thumbnails`` made it already."""
        if thumb is None and self._cadence > 1:
            thumb = thumbnail(image, THUMB_WIDTH)
        step, patches = "detect", []
        if thumb is not None:
            self._scale = thumb.shape[1] / image.shape[1]  # thumbnail px per frame px
            step, patches = self._step(thumb, bool(refresh))
        if step == "carry":
            self._since += 1
            self.carried += 1
            return self._faces, False
        if step == "follow":
            return self._follow(image, thumb, patches, detect, refresh), True
        self._faces, self._since = detect(image), 0
        self._reference = self._last = thumb
        self.runs += 1
        return self._faces, True

    def _follow(self, image, thumb, patches: list, detect: Detect, refresh: Refresh | None):
        """The faces in view followed (refreshed where they moved, else carried) and the
        detector run on ``patches`` (frame-pixel boxes) and around each face a refresh lost:
        there its finds replace the faces followed."""
        followed, lost, refreshed = self._faces, [], False
        if refresh is not None and self._moved(thumb):
            followed, lost = _refreshed_each(image, self._faces, refresh)
            refreshed = True
        height, width = image.shape[:2]
        searched = patches + [
            _holding_faces(_clipped(_person_box(face.box), width, height), self._faces)
            for face in lost
        ]
        found = []
        for patch in searched:
            found += [f for f in detect_in(image, patch, detect) if not _inside_any(f, found)]
        # A fresh find replaces the face followed to it; a followed face the patch search did
        # not find again (cut too tight, turned) is kept rather than lost.
        kept = [f for f in followed if not _overlaps_any(f, found)]
        # With no face in view before, the rest of the frame is as it was at the last look,
        # which found nothing: the whole frame now counts as looked at.
        self._since = self._since + 1 if self._faces else 0
        self._faces = kept + found
        if refreshed or not kept:
            # Every face is as this frame shows it; faces carried unrefreshed keep the look
            # they were last placed on, so that slow drift adds up to a refresh.
            self._last = thumb
        if patches:
            self._reference = thumb  # what changed outside the faces was looked at
        if searched:
            self.partial += 1
        else:
            self.refreshed += 1
        return self._faces

    def _step(self, thumb: np.ndarray, can_refresh: bool) -> tuple[str, list]:
        """What to do with this frame, and for a "region" step the frame-pixel patches."""
        if self._reference is None or self._reference.shape != thumb.shape:
            return "detect", []
        if self._faces and self._since + 1 >= self._cadence:
            return "detect", []
        people = _people(self._faces, self._scale, thumb.shape) if can_refresh else None
        if _changed_outside(thumb, self._reference, people) > self._min_share:
            # Without refresh the faces in view that moved must be found again: a patch search
            # would re-cut them at another scale, so only an empty scene is searched in patches.
            patches = self._patches(thumb, people) if can_refresh or not self._faces else []
            return ("follow", patches) if patches else ("detect", [])
        if not self._moved(thumb):
            return "carry", []
        return ("follow" if can_refresh else "detect"), []

    def _moved(self, thumb: np.ndarray) -> bool:
        """Whether any face in view moved or turned since it was last found."""
        return any(
            changed_share(thumb, self._last, _box_slice(face.box, self._scale, thumb.shape))
            > FACE_CHANGE_SHARE
            for face in self._faces
        )

    def _patches(self, thumb: np.ndarray, people: np.ndarray | None) -> list:
        """Frame-pixel boxes around the patches that changed outside ``people``, each grown to
        hold the whole of any face in view it touches (so no face is cut in two: the detector
        finds it again and ``_follow`` keeps that find); empty where they cover more
        than REGION_MAX_SHARE of the frame (the detector then looks at all of it)."""
        changed = changed_pixels(thumb, self._reference)
        if people is not None:
            changed &= ~people
        grown = cv2.dilate(
            changed.astype(np.uint8), np.ones((2 * REGION_MARGIN + 1,) * 2, np.uint8)
        )
        count, _, stats, _ = cv2.connectedComponentsWithStats(grown)
        boxes = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:count]]
        area = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes)
        if not boxes or area > REGION_MAX_SHARE * changed.size:
            return []
        return [_holding_faces(tuple(v / self._scale for v in b), self._faces) for b in boxes]


def detect_in(image: np.ndarray, box, detect: Detect) -> Faces:
    """``detect`` run on the part of ``image`` under ``box`` (frame pixels), its faces moved
    back into frame pixels."""
    h, w = image.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    offset = np.array([x1, y1], np.float32)
    return [
        replace(
            face,
            box=(face.box[0] + x1, face.box[1] + y1, face.box[2] + x1, face.box[3] + y1),
            landmarks=np.asarray(face.landmarks, np.float32) + offset,
        )
        for face in detect(image[y1:y2, x1:x2])
    ]


def _holding_faces(box, faces: Faces) -> tuple:
    """``box`` grown to hold each face whose box it overlaps with HOLD_MARGIN around it: a
    detector needs some context around a face to find it (MTCNN's P-Net looks at 12 px windows
    of a pyramid; a face filling the patch edge to edge is at its smallest scale's limit)."""
    for face in faces:
        f = face.box
        if box[0] < f[2] and f[0] < box[2] and box[1] < f[3] and f[1] < box[3]:
            mx, my = HOLD_MARGIN * (f[2] - f[0]), HOLD_MARGIN * (f[3] - f[1])
            box = (
                min(box[0], f[0] - mx),
                min(box[1], f[1] - my),
                max(box[2], f[2] + mx),
                max(box[3], f[3] + my),
            )
    return box


def _refreshed_each(image: np.ndarray, faces: Faces, refresh: Refresh) -> tuple[Faces, Faces]:
    """The faces followed into ``image`` and those lost there: all at once (one batch per
    stage), else each on its own (a face two refreshes led to counts once)."""
    together = refresh(image, faces)
    if together is not None:
        return together, []
    followed, lost = [], []
    for face in faces:
        found = refresh(image, [face])
        if found is None:
            lost.append(face)
        elif not _inside_any(found[0], followed):
            followed.append(found[0])
    return followed, lost


def _person_box(box) -> tuple:
    """Where the visitor of a face ``box`` moves (PERSON_*), in the same pixels."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (
        x1 - PERSON_SIDE * w,
        y1 - PERSON_ABOVE * h,
        x2 + PERSON_SIDE * w,
        y2 + PERSON_BELOW * h,
    )


def _clipped(box, width: int, height: int) -> tuple:
    return (
        max(0.0, box[0]),
        max(0.0, box[1]),
        min(float(width), box[2]),
        min(float(height), box[3]),
    )


def _overlaps_any(face, faces: Faces) -> bool:
    """Whether ``face`` and one of ``faces`` are the same face: either's centre in the other."""
    return _inside_any(face, faces) or any(_inside_any(f, [face]) for f in faces)


def _inside_any(face, faces: Faces) -> bool:
    """Whether ``face``'s centre lies in the box of one of ``faces`` (the same face twice)."""
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    return any(f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3] for f in faces)


def _changed_outside(thumb: np.ndarray, reference: np.ndarray, people: np.ndarray | None) -> float:
    """The share of the thumbnail that changed outside ``people`` (a mask; None: nowhere)."""
    if people is None or not people.any():
        return changed_share(thumb, reference)
    return changed_share(thumb, reference, ~people) * float(np.mean(~people))


def _people(faces: Faces, scale: float, shape: tuple[int, ...]) -> np.ndarray:
    """The thumbnail pixels where the visitors of ``faces`` move (PERSON_*)."""
    mask = np.zeros(shape[:2], bool)
    for face in faces:
        mask[_box_slice(_person_box(face.box), scale, shape)] = True
    return mask


def _box_slice(box, scale: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The thumbnail pixels under a frame-pixel box (at least one)."""
    h, w = shape[:2]
    x1, y1 = (int(np.clip(v * scale, 0, n - 1)) for v, n in ((box[0], w), (box[1], h)))
    x2, y2 = (int(np.clip(np.ceil(v * scale), 1, n)) for v, n in ((box[2], w), (box[3], h)))
    return slice(y1, max(y2, y1 + 1)), slice(x1, max(x2, x1 + 1))
