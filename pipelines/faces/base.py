"""What every face detector shares: ``Face``, the ``FaceDetector`` interface, and the pieces
each detector would otherwise repeat (model loading, NMS, the working image, the output
handling that ends every ``detect``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import onnxruntime as ort

from common.geometry import box_size
from common.sessions import cpu_session
from pipelines.faces.graphs import Rewrite, rewritten
from pipelines.inputs import read_bytes

__all__ = [
    "LANDMARK_NAMES",
    "DetectorClass",
    "Face",
    "FaceDetector",
    "PicklesByOptions",
    "checked_image",
    "detector_session",
    "face_on_chip",
    "faces_from",
    "nms",
    "read_model",
    "working_image",
]

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    box: (x1, y1, x2, y2) in frame pixels (float, x2/y2 exclusive edges).
    score: detector confidence in [0, 1].
    landmarks: (5, 2) float32 frame pixels (pixel-centre convention), in the order of
        ``LANDMARK_NAMES``: left eye, right eye, nose, left mouth corner, right mouth corner,
        left/right as seen in the image (the "left eye" has the smaller x on a frontal face).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        return box_size(self.box)


@runtime_checkable
class FaceDetector(Protocol):
    """What the pipeline needs from a face detector."""

    version: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 HxWx3 image, sorted by score, best first."""
        ...


class DetectorClass(Protocol):
    """What the registry needs from a detector's class: built from keyword options, and its
    version readable without building the detector (no ONNX Runtime session)."""

    def __call__(self, **options) -> FaceDetector: ...

    def version_for(self, model: str | os.PathLike | None = None, **options) -> str: ...


def face_on_chip(
    detector: FaceDetector, chip: np.ndarray, pad: float = 0.25
) -> tuple[np.ndarray, Face | None, int]:
    """The face a face chip (a photo cropped around one face) shows: ``(padded, face, offset)``.

    The chip is padded by ``pad`` of its side with a replicated border, because MTCNN misses
    faces that fill the whole image; ``face`` is in the padded image's pixels (``offset`` to
    subtract for chip pixels): the one nearest the centre among the three most confident, so a
    neighbour cut by the chip's edge is not taken; None when no face is found."""
    offset = int(round(pad * max(chip.shape[:2])))
    padded = cv2.copyMakeBorder(chip, offset, offset, offset, offset, cv2.BORDER_REPLICATE)
    faces = detector.detect(padded)
    if not faces:
        return padded, None, offset
    cx, cy = padded.shape[1] / 2, padded.shape[0] / 2
    face = min(
        faces[:3],
        key=lambda f: ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2,
    )
    return padded, face, offset


# --------------------------------------------------------------------------- model files


def read_model(path: str | os.PathLike) -> bytes:
    """A detector's model file, local or on any Beam filesystem, with one-line errors:
    FileNotFoundError when it is missing, ValueError when it cannot be read."""
    path = str(path)
    try:
        return read_bytes(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"face detector model file not found: {path}") from None
    except Exception as exc:  # Beam wraps filesystem errors in its own types per scheme
        raise ValueError(f"cannot read face detector model {path}: {exc}") from None


def detector_session(
    path: str | os.PathLike,
    threads: int,
    rewrites: Sequence[Rewrite] = (),
    data: bytes | None = None,
) -> ort.InferenceSession:
    """An ORT session for the model file at ``path`` (``data``: its bytes, when the caller has
    read them already), with ``rewrites`` (``pipelines.faces.graphs``) applied first; a rewrite
    that does not fit the graph is skipped, and bytes that do not parse are left for ONNX Runtime
    to reject with its reason (a one-line ValueError)."""
    if data is None:
        data = read_model(path)
    try:
        return cpu_session(rewritten(data, rewrites), threads)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"cannot load face detector model {path}: {exc}") from exc


class PicklesByOptions:
    """Base of detectors that go inside Beam DoFns: pickling keeps the constructor's options
    (``self._options``) and unpickling rebuilds the ONNX Runtime sessions from them."""

    _options: dict

    def __getstate__(self) -> dict:
        return dict(self._options)

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


# --------------------------------------------------------------------------- detection steps


def checked_image(image: np.ndarray, min_side: int) -> np.ndarray | None:
    """The start of every ``detect``: ``image`` as a C-contiguous uint8 HxWx3 array (values
    clipped to 0-255 first), or None when a side is under ``min_side``, the network's smallest
    window, so no face can be found. Anything but an HxWx3 array raises ValueError."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("detect expects an RGB uint8 image of shape (H, W, 3)")
    if min(image.shape[:2]) < min_side:
        return None
    if image.dtype != np.uint8 or not image.flags.c_contiguous:
        image = np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8, copy=False))
    return image


def faces_from(
    image_shape: tuple[int, ...],
    boxes: np.ndarray,
    scores: np.ndarray,
    landmarks: np.ndarray,
    min_face_px: float | None = None,
) -> list[Face]:
    """The end of every ``detect``: boxes (N, >=4; x1 y1 x2 y2 in image pixels) clipped to an
    image of ``image_shape``, those left empty dropped, then (``min_face_px`` set) those whose
    ``Face.size`` is under it, sorted best score first (stable: ties keep their order).
    ``landmarks`` (N, 5, 2) pass through unchanged."""
    h, w = image_shape[:2]
    faces = []
    for box, score, points in zip(boxes, scores, landmarks, strict=True):
        x1, y1 = max(0.0, float(box[0])), max(0.0, float(box[1]))
        x2, y2 = min(float(w), float(box[2])), min(float(h), float(box[3]))
        if x2 <= x1 or y2 <= y1:
            continue
        face = Face(box=(x1, y1, x2, y2), score=float(score), landmarks=points)
        if min_face_px is None or face.size >= min_face_px:
            faces.append(face)
    faces.sort(key=lambda f: -f.score)
    return faces


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    mode "union": overlap = IoU; "min": intersection over the smaller box (MTCNN's last stage).
    """
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        if mode == "min":
            overlap = inter / np.maximum(np.minimum(area[i], area[rest]), 1e-9)
        else:
            overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def working_image(
    image: np.ndarray, max_side: int | None, min_side: int = 1
) -> tuple[np.ndarray, float, float]:
    """The image a detector network sees: ``image`` downscaled (INTER_AREA) so its longer side is
    at most ``max_side`` (None: never), each side at least ``min_side``; with the x and y ratios
    (working px per image px) that map results back to the image."""
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image, 1.0, 1.0
    ratio = max_side / max(h, w)
    size = (max(min_side, round(w * ratio)), max(min_side, round(h * ratio)))
    work = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return work, size[0] / w, size[1] / h
