"""YuNet (Wu, Peng, Yu 2023) behind the ``FaceDetector`` interface, run by ONNX Runtime directly.

The network is OpenCV Zoo's ``face_detection_yunet_2023mar.onnx`` (MIT licence), shipped in
``pipelines/faces/weights/`` with its licence; ``model=PATH`` runs another file of the same
layout (a retrained or quantised YuNet); nothing is downloaded. It runs
through ONNX Runtime rather than ``cv2.FaceDetectorYN``, whose presence depends on how OpenCV was
built, and so it shares MTCNN's session settings (one intra-op thread per worker by default).

The file declares a fixed 1x3x640x640 input, but every layer is size-agnostic (convolutions,
pooling, nearest 2x upsampling, reshapes to -1): the declared shapes are dropped at load time
(``pipelines.faces.graphs.any_input_size``) so one pass runs on the frame's own aspect ratio,
padded to a multiple of 32 as OpenCV does.

Decoding follows OpenCV's ``FaceDetectorYN`` for the 2023mar layout: for each stride s in 8, 16,
32 and grid cell (row r, column c), score = sqrt(cls * obj), box centre (c + dx, r + dy) * s,
size exp(dw, dh) * s, landmark k at (c + kx, r + ky) * s. YuNet names its landmarks from the
subject's viewpoint (right eye, left eye, nose tip, right and left mouth corners), so its first
eye is the one with the smaller x in the image: exactly this project's as-seen order
(``LANDMARK_NAMES``), no reordering needed (checked on UTKFace chips against MTCNN).

The 2022 release (``face_detection_yunet_2022mar.onnx``) has another output layout (loc, conf,
iou with prior boxes) and is rejected with a message saying so.

The cost does not depend on ``min_face_px``, a filter on the results: ``max_side`` is the lever,
and it also sets the reach. YuNet needs a face of about 30 px (40 px on a flat background) in
the image it sees, so at 1080p max_side 640 misses faces under about 90 px; 960 reaches about
60 px, 1280 about 45 px. Scores are sqrt(cls * obj): real faces score 0.85-0.95 (MTCNN's are
near 1), so a ``min_score`` tuned for MTCNN (0.9) drops many YuNet faces; 0.6-0.7 suits it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from pipelines.faces.base import (
    Face,
    PicklesByOptions,
    checked_image,
    detector_session,
    faces_from,
    nms,
    read_model,
    working_image,
)
from pipelines.faces.graphs import any_input_size
from pipelines.faces.mtcnn import MtcnnDetector

__all__ = ["SHIPPED_MODEL", "YUNET_2023MAR_SHA256", "YunetDetector", "yunet_version"]

SHIPPED_MODEL = Path(__file__).with_name("weights") / "face_detection_yunet_2023mar.onnx"

# SHA-256 of OpenCV Zoo's face_detection_yunet_2023mar.onnx (232,589 bytes)
YUNET_2023MAR_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
STRIDES = (8, 16, 32)
OUTPUTS = tuple(f"{head}_{s}" for head in ("cls", "obj", "bbox", "kps") for s in STRIDES)
# Whose landmarks a face gets (YunetDetector's ``landmarks``), and the mark its version carries:
# the two give different crops, so their results must not share a version.
LANDMARKS = ("onet", "yunet")
_SUFFIX = {"onet": "+onet", "yunet": ""}
MAX_CANDIDATES = 5000  # as FaceDetectorYN's top_k: bounds the NMS cost on a pathological frame


def _version(data: bytes) -> str:
    """A version that names the weights: results of two different files never share it."""
    digest = hashlib.sha256(data).hexdigest()
    return "yunet-2023mar" if digest == YUNET_2023MAR_SHA256 else f"yunet-sha256-{digest[:12]}"


def _require_model(model: str | os.PathLike | None) -> str:
    """The file to run: the given one, else the shipped one."""
    return str(SHIPPED_MODEL if model is None else model)


def _require_outputs(names: set[str], path: str) -> None:
    """ValueError unless the graph has YuNet 2023mar's outputs (the 2022 release has others)."""
    if not names.issuperset(OUTPUTS):
        raise ValueError(
            f"{path} is not YuNet 2023mar (outputs {sorted(names)}, expected "
            "cls/obj/bbox/kps_8/16/32; the 2022 release has another layout)"
        )


def yunet_version(model: str | os.PathLike | None) -> str:
    """The version of a YuNet file, from its SHA-256, without an ONNX Runtime session; the
    detector's one-line errors for a missing, unreadable or non-YuNet file."""
    path = _require_model(model)
    data = read_model(path)
    try:
        graph = onnx.load_model_from_string(data).graph
    except DecodeError as exc:
        raise ValueError(f"cannot load face detector model {path}: {exc}") from None
    _require_outputs({o.name for o in graph.output}, path)
    return _version(data)


def _blob(image: np.ndarray) -> np.ndarray:
    """RGB uint8 HxWx3 -> the net's input: 1x3xH'xW' BGR float 0-255, zero-padded at the bottom
    and right to multiples of 32 (the coarsest stride), as FaceDetectorYN pads."""
    h, w = image.shape[:2]
    blob = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    blob[0, :, :h, :w] = image[:, :, ::-1].transpose(2, 0, 1)
    return blob


def _decode(
    outputs: dict[str, np.ndarray], width: int, height: int, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates above ``min_score`` from all strides: boxes (N, 4) x1 y1 x2 y2, scores (N,),
    landmarks (N, 5, 2), in the padded input's pixels (see ``YunetDetector._to_frame``)."""
    boxes, scores, points = [], [], []
    for s in STRIDES:
        cols = width // s
        cls = np.clip(outputs[f"cls_{s}"][0, :, 0], 0, 1)
        obj = np.clip(outputs[f"obj_{s}"][0, :, 0], 0, 1)
        score = np.sqrt(cls * obj)
        idx = np.nonzero(score >= min_score)[0]
        if not idx.size:
            continue
        cell = np.stack([idx % cols, idx // cols], axis=1).astype(np.float32)
        reg = outputs[f"bbox_{s}"][0, idx]
        centre = (cell + reg[:, :2]) * s
        half = np.exp(reg[:, 2:4]) * s / 2
        boxes.append(np.hstack([centre - half, centre + half]))
        scores.append(score[idx])
        points.append((outputs[f"kps_{s}"][0, idx].reshape(-1, 5, 2) + cell[:, None]) * s)
    if not boxes:
        return np.empty((0, 4)), np.empty(0), np.empty((0, 5, 2))
    return np.vstack(boxes), np.concatenate(scores), np.vstack(points)


class YunetDetector(PicklesByOptions):
    """YuNet 2023mar over ONNX Runtime (see the module docstring).

    model: path of ``face_detection_yunet_2023mar.onnx``; required (no copy ships with this
        project).
    min_face_px: faces whose size, sqrt(box width * height) in pixels of the image passed to
        ``detect``, is smaller are dropped. A filter only: it does not change the cost.
    min_score: candidates below this score, sqrt(cls * obj), are dropped before NMS.
    max_side: images whose longer side exceeds it are downscaled to it (INTER_AREA) before the
        network; results are always in full-resolution pixels. None: no downscale.
    nms_threshold: IoU above which the lower-scored of two boxes is suppressed (OpenCV's 0.3).
    threads: ONNX Runtime intra-op threads (default 1: the pipeline parallelises across workers).
    landmarks: "yunet" (default): YuNet's own points; "onet": each face YuNet finds gets MTCNN's
        box and landmarks from O-Net (``MtcnnDetector.place``, about 1 ms a face), the points
        the face model's crop template was made from, and the detector can ``refresh`` faces as
        MTCNN does. Crops from YuNet's points read one real-clip woman as a man of 53, from
        O-Net's as a woman of 48; head pose (``pipelines.pose``) was fitted on YuNet's points
        and reads O-Net's about 8 degrees more downward.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        min_face_px: float = 20,
        min_score: float = 0.6,
        max_side: int | None = 640,
        nms_threshold: float = 0.3,
        threads: int = 1,
        landmarks: str = "yunet",
    ):
        self.model = _require_model(model)  # local path or any Beam filesystem URL
        if landmarks not in LANDMARKS:
            raise ValueError(f"landmarks must be one of {', '.join(LANDMARKS)}")
        if not 0 <= min_score <= 1:
            raise ValueError("min_score must be in [0, 1]")
        if not 0 < nms_threshold <= 1:
            raise ValueError("nms_threshold must be in (0, 1]")
        if max_side is not None and max_side < 32:
            raise ValueError("max_side must be None or >= 32")
        self._options = dict(
            model=self.model,
            min_face_px=min_face_px,
            min_score=min_score,
            max_side=max_side,
            nms_threshold=nms_threshold,
            threads=threads,
            landmarks=landmarks,
        )
        self.min_face_px = float(min_face_px)
        self.min_score = float(min_score)
        self.max_side = max_side
        self.nms_threshold = float(nms_threshold)
        data = read_model(self.model)
        self._net = detector_session(self.model, threads, (any_input_size,), data=data)
        _require_outputs({o.name for o in self._net.get_outputs()}, self.model)
        self._input = self._net.get_inputs()[0].name
        self.version = _version(data) + _SUFFIX[landmarks]
        self._placer = None
        if landmarks == "onet":
            self._placer = MtcnnDetector(min_face_px=12, threads=threads)
            self.refresh = self._refresh  # follows faces as MTCNN does (pipelines.cadence)

    @staticmethod
    def version_for(model: str | os.PathLike | None = None, landmarks: str = "yunet") -> str:
        return yunet_version(model) + _SUFFIX[landmarks]

    def __repr__(self) -> str:
        return (
            f"YunetDetector(model={self.model!r}, min_face_px={self.min_face_px:g}, "
            f"min_score={self.min_score:g}, max_side={self.max_side}, "
            f"landmarks={self._options['landmarks']!r})"
        )

    @staticmethod
    def _to_frame(boxes, points, fx, fy) -> tuple[np.ndarray, np.ndarray]:
        """Working-image outputs -> full-resolution pixels: boxes as edges, landmarks as pixel
        centres (x_full + 0.5 = (x_work + 0.5) / fx). Taking YuNet's points as pixel centres is
        the reading its mirror symmetry supports best: on UTKFace chips flipped left-right, the
        points' horizontal bias is +1.8, -2.3 and -1.1 px for 100, 200 and 400 px faces (MTCNN:
        under 0.2 px), scale-dependent model error around zero rather than a half-pixel shift."""
        scale = np.array([fx, fy])
        boxes = boxes / np.tile(scale, 2)
        points = (points + 0.5) / scale - 0.5
        return boxes, points.astype(np.float32)

    def _refresh(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face] | None:
        """``MtcnnDetector.refresh`` keeping each face's YuNet score, so a face's score means
        the same whether it was found or followed (``min_score`` and the visitor's quality
        weights read it): each face followed takes the score of the face it came from."""
        found = self._placer.refresh(image, faces)
        if found is None:
            return None
        centres = np.array([[(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2] for f in faces])
        followed = []
        for face in found:
            centre = np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])
            nearest = int(np.argmin(np.sum((centres - centre) ** 2, axis=1)))
            followed.append(replace(face, score=faces[nearest].score))
        return followed

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 HxWx3 image, best score first, in the image's pixels; those
        under ``min_face_px`` dropped."""
        image = checked_image(image, 8)  # the finest stride
        if image is None:
            return []
        work, fx, fy = working_image(image, self.max_side)
        blob = _blob(work)
        outputs = dict(zip(OUTPUTS, self._net.run(list(OUTPUTS), {self._input: blob}), strict=True))
        boxes, scores, points = _decode(outputs, blob.shape[3], blob.shape[2], self.min_score)
        if len(scores) > MAX_CANDIDATES:
            top = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
            boxes, scores, points = boxes[top], scores[top], points[top]
        keep = nms(boxes, scores, self.nms_threshold)
        boxes, points = self._to_frame(boxes[keep], points[keep], fx, fy)
        faces = faces_from(image.shape, boxes, scores[keep], points, self.min_face_px)
        return self._placer.place(image, faces) if self._placer else faces
