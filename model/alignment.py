"""Faces onto the model's crop template, the way the video pipeline puts them there.

UTKFace chips are aligned already; the model trains on them centre-cropped and resized
(``model.preprocess.prepare_chip``), and its crop template is estimated from them
(``crop_template``): where MTCNN's five landmarks sit on the chips, mapped into the input crop.
Every other face set goes through the pipeline's own path instead: detect the face, take its
landmarks, warp them onto that template (``pipelines.crops.align_face``). FER-2013's faces are
tight 48 px grayscale crops; the mask set's are loose colour crops with the face's box given.

Where the detector finds no face that matches the face's box (a mask hides the mouth and nose
that MTCNN's last stage looks for), the landmarks come from the box instead: the median
position of the landmarks within the box, learned on the same set's detected faces. The counts
of detected and fallback faces per label are kept (``Aligner.stats``): the detector's recall on
that set; ``Aligner.detected`` says which it was for each face, so a head's accuracy can be read
apart on the faces the detector found and on those placed from their box.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from common.geometry import iou
from model.datasets import DataError, FaceRecord, is_tar, load_images
from model.preprocess import DecodeError, decode_rgb
from model.template import estimate_template
from pipelines.crops import align_face
from pipelines.faces import FaceDetector, MtcnnDetector, YunetDetector, face_on_chip
from schemas.model_file import CLASS_NAMES

# A detected face belongs to the annotated one when their boxes overlap at least this much.
MIN_BOX_IOU = 0.3
# Faces the template and the fallback landmarks are learned from.
CALIBRATION_FACES = 400


def sample_chips(data: str | Path, records, n: int, seed: int) -> list[np.ndarray]:
    """A seeded sample of ``n`` of the records' chips, decoded (unreadable ones left out)."""
    rng = np.random.default_rng(seed)
    picked = [records[i] for i in sorted(rng.choice(len(records), min(n, len(records)), False))]
    root = Path(data)
    if is_tar(root):
        return _chips_from_tar(root, {r.path for r in picked})
    chips = []
    for r in picked:
        with contextlib.suppress(OSError, DecodeError):
            chips.append(decode_rgb((root / r.path).read_bytes()))
    return chips


def _chips_from_tar(path: Path, wanted: set[str]) -> list[np.ndarray]:
    """The ``wanted`` members of a tar archive, decoded, in one sequential pass."""
    chips = []
    with tarfile.open(path, "r|*") as tar:
        for m in tar:
            if m.name in wanted and m.isfile():
                with contextlib.suppress(DecodeError):
                    chips.append(decode_rgb(tar.extractfile(m).read()))
    return chips


def chip_detector(name: str = "mtcnn", min_score: float = 0.6) -> FaceDetector:
    """The detector the template and the training alignment use: MTCNN, the pipeline's
    default, down to the small faces of FER-2013 and the mask crops. ``name`` yunet: the
    pipeline's other detector with O-Net's landmarks (``detector.landmarks: onet``), on crops
    enlarged as ``EnlargedCrops`` says, its faces scoring at least ``min_score``."""
    if name == "mtcnn":
        return MtcnnDetector(min_face_px=16, threads=1)
    yunet = YunetDetector(min_face_px=8, min_score=min_score, max_side=None, landmarks="onet")
    return EnlargedCrops(yunet, YUNET_CROP_SIDE)


# YuNet needs a face of about 30 px (pipelines.faces.yunet) and sees no finer than its 8 px
# stride, while MTCNN's pyramid reaches down to ``min_face_px`` by itself: the sets' small crops
# (FER's 48 px) are enlarged to this longer side for it, as a camera close enough would see them.
YUNET_CROP_SIDE = 320


class EnlargedCrops:
    """``detector`` run on images enlarged (bilinear) to at least ``side`` px on their longer
    side, its faces mapped back to the image's pixels."""

    def __init__(self, detector: FaceDetector, side: int):
        self.detector, self.side = detector, side
        self.version = detector.version

    def detect(self, image: np.ndarray) -> list:
        h, w = image.shape[:2]
        f = max(1.0, self.side / max(h, w))
        if f == 1.0:
            return self.detector.detect(image)
        size = (round(w * f), round(h * f))
        big = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        fx, fy = size[0] / w, size[1] / h
        return [
            replace(
                face,
                box=(face.box[0] / fx, face.box[1] / fy, face.box[2] / fx, face.box[3] / fy),
                landmarks=((face.landmarks + 0.5) / np.array([fx, fy]) - 0.5).astype(np.float32),
            )
            for face in self.detector.detect(big)
        ]


def detect_chip_landmarks(chips: list[np.ndarray]) -> np.ndarray:
    """Landmarks (M, 5, 2) in chip pixels of the face found on each chip (chips where no face is
    found are left out)."""
    detector = MtcnnDetector(min_face_px=40, threads=1)
    out = []
    for chip in chips:
        _, face, offset = face_on_chip(detector, chip)
        if face is not None:
            out.append(np.asarray(face.landmarks, np.float64) - offset)
    return np.asarray(out, np.float64).reshape(-1, 5, 2)


def crop_template(root, train_recs, samples: int, size: int, crop: float):
    """The model's crop template from its own training chips: MTCNN's landmarks on a seeded
    sample, mapped through the chip -> input transform. Returns it with the faces and chips
    it came from."""
    chips = sample_chips(str(root), train_recs, samples, seed=0)
    if not chips:
        raise DataError("no training chip could be read for the template")
    sizes = {c.shape[:2] for c in chips}
    chip_hw = max(sizes, key=lambda s: sum(c.shape[:2] == s for c in chips))
    chips = [c for c in chips if c.shape[:2] == chip_hw]
    marks = detect_chip_landmarks(chips)
    if len(marks) < 10:
        raise DataError(f"face detector found only {len(marks)} faces on the chips")
    return estimate_template(marks, chip_hw, size, crop, symmetric=True), len(marks), len(chips)


def face_box(rgb: np.ndarray, record: FaceRecord) -> tuple[float, float, float, float]:
    """The face's box: the annotated one, or the whole image for a tight crop."""
    return record.box if record.box is not None else (0.0, 0.0, rgb.shape[1], rgb.shape[0])


def find_landmarks(detector: FaceDetector, rgb: np.ndarray, box) -> np.ndarray | None:
    """The landmarks (5, 2) of the detected face that matches ``box`` best, in ``rgb``'s
    pixels; None when none overlaps it by ``MIN_BOX_IOU``. The image is padded first, as
    ``face_on_chip`` pads: MTCNN misses faces that fill it."""
    pad = int(round(0.25 * max(rgb.shape[:2])))
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    best, best_iou = None, MIN_BOX_IOU
    for face in detector.detect(padded):
        overlap = iou(tuple(v - pad for v in face.box), box)
        if overlap >= best_iou:
            best, best_iou = np.asarray(face.landmarks, np.float64) - pad, overlap
    return best


def box_landmarks(box, relative: np.ndarray) -> np.ndarray:
    """Landmarks placed in ``box`` at ``relative`` positions (fractions of its width and
    height from its top-left corner)."""
    x1, y1, x2, y2 = box
    return np.array([x1, y1]) + relative * np.array([x2 - x1, y2 - y1])


def label_of(record: FaceRecord) -> str:
    """The record's class for the detection counts: its mask status or emotion."""
    if record.mask >= 0:
        return CLASS_NAMES["mask"][record.mask]
    if record.emotion >= 0:
        return CLASS_NAMES["emotion"][record.emotion]
    return "face"


def relative_landmarks(records, root, detector: FaceDetector, seed: int = 0) -> np.ndarray:
    """The median landmark positions within the face box on a seeded sample of the set's
    faces where the detector finds them; the fallback for the faces where it does not."""
    rng = np.random.default_rng(seed)
    n = min(CALIBRATION_FACES, len(records))
    sample = [records[i] for i in sorted(rng.choice(len(records), n, replace=False))]
    found = []

    def measure(rgb: np.ndarray, record: FaceRecord) -> np.ndarray:
        box = face_box(rgb, record)
        marks = find_landmarks(detector, rgb, box)
        if marks is not None:
            x1, y1, x2, y2 = box
            found.append((marks - [x1, y1]) / [x2 - x1, y2 - y1])
        return np.zeros((1, 1, 3), np.uint8)

    load_images(sample, root, 1, prepare=measure)
    if len(found) < 10:
        raise DataError(f"the detector found only {len(found)} of {n} sampled faces in {root}")
    return np.median(np.stack(found), axis=0)


class Aligner:
    """``prepare(rgb, record)`` for ``model.datasets.load_images``: the record's face warped
    onto ``template``, from detected landmarks or, failing that, from its box."""

    def __init__(self, template, size: int, detector: FaceDetector, relative: np.ndarray):
        self.template = np.asarray(template, np.float64)
        self.size = size
        self.detector = detector
        self.relative = relative
        self.stats: Counter = Counter()  # (label, "detected" | "fallback") -> faces
        self.detected: dict[str, bool] = {}  # record path -> whether its landmarks were found

    def __call__(self, rgb: np.ndarray, record: FaceRecord) -> np.ndarray:
        box = face_box(rgb, record)
        marks = find_landmarks(self.detector, rgb, box)
        self.stats[(label_of(record), "fallback" if marks is None else "detected")] += 1
        self.detected[record.path] = marks is not None
        if marks is None:
            marks = box_landmarks(box, self.relative)
        return align_face(rgb, marks, self.template, self.size)

    def recall(self) -> dict[str, dict]:
        """Per label: faces, faces the detector found, and the share."""
        labels = sorted({label for label, _ in self.stats})
        out = {}
        for label in labels:
            found, missed = self.stats[(label, "detected")], self.stats[(label, "fallback")]
            share = round(found / max(1, found + missed), 4)
            out[label] = {"faces": found + missed, "detected": found, "recall": share}
        return out
