"""The parts of ``jobs.evaluate`` that need no model session: which faces the model's own split
held out, emotion and mask faces aligned onto a model's crop template exactly as training
aligned them (``model.alignment``), the detector's recall on them, and the paired comparison
of two models' classification heads. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from model.alignment import Aligner, relative_landmarks
from model.datasets import DataError, FaceRecord, load_images
from model.metrics import class_metrics, paired_classes
from schemas.model_file import CLASS_NAMES

# Defaults of config/train.yaml, for model files whose metadata predates the keys.
VAL_FRACTION = 0.1
GROUP_VAL_FRACTION = 0.2


def split_settings(
    extra: dict[str, str], kind: str, seed: int | None = None, fraction: float | None = None
) -> dict:
    """Seed and validation fraction of the split the model was trained with, from its
    ``val_split`` metadata (``seed``, ``fraction`` override them): UTKFace faces are held out by
    file name (``val_fraction``), the other sets by group, the photo a mask crop was cut from
    (``group_val_fraction``), as ``model.training_data`` splits them."""
    info = json.loads(extra.get("val_split", "{}") or "{}")
    key, default = ("val_fraction", VAL_FRACTION)
    if kind != "utkface":
        key, default = ("group_val_fraction", GROUP_VAL_FRACTION)
    seed = seed if seed is not None else int(info.get("seed", 0))
    fraction = fraction if fraction is not None else float(info.get(key, default))
    return {"seed": seed, key: fraction}


def split_basis(records: list[FaceRecord]) -> str:
    """What ``model.datasets.split_records`` splits these records by (for the report)."""
    if any(r.split for r in records):
        return "folder"  # FER-2013 comes split: its val folder is the validation set
    return "photo" if any(r.group for r in records) else "file"


class MemoDetector:
    """A face detector that answers each image once: the calibration sample and the faces of
    both models of ``--against`` (each aligned onto its own template) are the same images, and
    the detector is by far the slowest step."""

    def __init__(self, detector):
        self.detector = detector
        self.version = detector.version
        self._answers: dict[tuple, list] = {}

    def detect(self, image: np.ndarray) -> list:
        key = (image.shape, hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest())
        if key not in self._answers:
            self._answers[key] = self.detector.detect(image)
        return self._answers[key]


def landmark_calibration(
    records: list[FaceRecord], root: str | Path, detector
) -> np.ndarray | None:
    """The set's fallback landmarks (positions within the face box) learned as training learned
    them: on a seeded sample of all the set's faces, whatever split is evaluated. None, with a
    warning, where the detector finds too few faces to learn from (a small or synthetic set):
    each model's own template positions then stand in (``template_relative``)."""
    try:
        return relative_landmarks(records, root, detector)
    except DataError as e:
        warnings.warn(
            f"{e}: the faces it misses are placed by the crop template's own positions in "
            "their box",
            stacklevel=2,
        )
        return None


def template_relative(template, size: int) -> np.ndarray:
    """The crop template as fractions of the crop: with these as box-relative landmarks a
    face's box is warped onto the whole crop."""
    return np.asarray(template, np.float64) / float(size)


def aligned_faces(records, root, spec, detector, relative: np.ndarray | None):
    """``(images, ok, aligner)``: the records' faces warped onto ``spec``'s crop template at
    its input size, from detected landmarks or, where the detector misses a face, from its box
    (``relative``; None: the template's own positions). The aligner keeps the detector's
    counts per class."""
    if relative is None:
        relative = template_relative(spec.crop_template, spec.input_size)
    aligner = Aligner(spec.crop_template, spec.input_size, detector, relative)
    images, ok = load_images(records, root, spec.input_size, prepare=aligner)
    return images, ok, aligner


def in_class_order(head: str, model_classes, probs: np.ndarray) -> np.ndarray:
    """A head's probabilities with columns in ``CLASS_NAMES[head]`` order, the order of the
    records' labels, whatever order the model file lists its classes in."""
    wanted, have = list(CLASS_NAMES[head]), list(model_classes)
    if have == wanted:
        return probs
    if sorted(have) != sorted(wanted):
        raise DataError(
            f"the model's {head} classes ({', '.join(have)}) are not the data set's "
            f"({', '.join(wanted)})"
        )
    return probs[:, [have.index(name) for name in wanted]]


def detection_summary(aligner: Aligner, head: str, calibrated: bool) -> dict:
    """The detector's recall on the faces evaluated, overall and per class (in the head's
    class order), and where the landmarks of the faces it missed came from."""
    per_class = aligner.recall()
    classes = CLASS_NAMES.get(head, ("face",))  # an identity set's faces have no class
    per_class = {c: per_class[c] for c in classes if c in per_class}
    faces = sum(v["faces"] for v in per_class.values())
    found = sum(v["detected"] for v in per_class.values())
    return {
        "faces": faces,
        "detected": found,
        "recall": round(found / max(1, faces), 4),
        "per_class": per_class,
        "fallback_landmarks": "learned on the set" if calibrated else "crop template",
    }


def head_detection(run: dict, head: str, calibrated: bool) -> dict:
    """``detection_summary`` of a run's aligner, with the head's figures (``class_metrics``) on
    the faces the detector found and on those aligned from their box, apart: what the detector's
    misses cost the head, against what the head gets wrong on well-placed faces."""
    found = np.array([run["aligner"].detected.get(r.path, False) for r in run["records"]])
    labels, probs = run["labels"][head], run["probs"][head]
    by_alignment = {
        source: class_metrics(labels[which], probs[which], CLASS_NAMES[head])
        for source, which in (("detected", found), ("fallback", ~found))
        if which.any()
    }
    return {**detection_summary(run["aligner"], head, calibrated), "by_alignment": by_alignment}


def right_by_face(run: dict, head: str) -> dict[str, bool]:
    """Whether a run's head got each labelled face right, by the face's path."""
    labels, probs = run["labels"][head], run["probs"][head]
    right = probs.argmax(1) == labels
    return {r.path: bool(right[i]) for i, r in enumerate(run["records"]) if labels[i] >= 0}


def paired_heads(a: dict, b: dict, heads) -> dict[str, dict]:
    """Per head, ``paired_classes`` over the labelled faces both runs read, face by face."""
    out = {}
    for head in heads:
        ra, rb = right_by_face(a, head), right_by_face(b, head)
        common = sorted(ra.keys() & rb.keys())
        out[head] = paired_classes([ra[k] for k in common], [rb[k] for k in common])
    return out
