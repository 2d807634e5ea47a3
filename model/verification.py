"""Face verification on LFW-style pairs: the pairs file, and EER, TAR at a fixed FAR and
cross-validated accuracy from similarity scores (numpy only).

The pairs file is LFW's View-2 format: a first line ``<folds> <n>``, then per fold ``n``
same-person lines ``name i j`` and ``n`` different-person lines ``name1 i name2 j``; images are
``<root>/<name>/<name>_<i:04d>.jpg``. Accuracy follows the protocol: for each fold, the
threshold that is best on the other folds is applied to it (no threshold sees its own pairs).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import numpy as np

from model.datasets import DataError, FaceRecord

# Where deep-funneled LFW images (250 x 250) hold the face: the median MTCNN box on them. The
# detection that overlaps it is the pair's face; a miss is aligned from it.
LFW_FACE_BOX = (77.0, 63.0, 170.0, 188.0)
FAR_TARGET = 1e-3


@dataclass(frozen=True)
class Pair:
    a: str  # image paths, as the records name them
    b: str
    same: bool
    fold: int


def pairs_file(names: list[str]) -> str | None:
    """The pairs file among a set's files (``pairs*.txt``), if any."""
    found = [n for n in names if posixpath.basename(n).startswith("pairs") and n.endswith(".txt")]
    return sorted(found)[0] if found else None


def parse_pairs(text: str, folder: str) -> list[Pair]:
    """The pairs of a View-2 pairs file whose images live under ``folder``."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    try:
        folds, n = (int(v) for v in lines[0][:2])
    except (IndexError, ValueError):
        raise DataError("the pairs file must start with '<folds> <pairs per half fold>'") from None

    def image(name: str, i: str) -> str:
        return posixpath.join(folder, name, f"{name}_{int(i):04d}.jpg")

    pairs = []
    for k, parts in enumerate(lines[1 : 1 + 2 * folds * n]):
        fold = k // (2 * n)
        if len(parts) == 3:
            pairs.append(Pair(image(parts[0], parts[1]), image(parts[0], parts[2]), True, fold))
        elif len(parts) == 4:
            pairs.append(Pair(image(parts[0], parts[1]), image(parts[2], parts[3]), False, fold))
        else:
            raise DataError(f"pairs file line {k + 2} is neither 'name i j' nor 'a i b j'")
    return pairs


def pair_records(pairs: list[Pair]) -> list[FaceRecord]:
    """One record per image the pairs use, with the LFW face box."""
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    return [FaceRecord(path, age=-1, gender=-1, box=LFW_FACE_BOX) for path in paths]


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)``: where the false accept and false reject rates cross."""
    thresholds = np.unique(scores)
    pos, neg = scores[same], scores[~same]
    far = np.array([(neg >= t).mean() for t in thresholds])
    frr = np.array([(pos < t).mean() for t in thresholds])
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2), float(thresholds[i])


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float = FAR_TARGET) -> dict:
    """The share of same-person pairs accepted at the lowest threshold whose false accept rate
    on the different-person pairs is at most ``far``. With n impostor pairs the smallest FAR
    measurable is 1/n; ``impostors`` says how fine the figure is."""
    neg = np.sort(scores[~same])
    allowed = int(np.floor(far * len(neg)))  # impostors that may score at or above it
    threshold = np.nextafter(neg[-1 - allowed], np.inf) if allowed < len(neg) else -np.inf
    return {
        "tar": float((scores[same] >= threshold).mean()),
        "far": float((neg >= threshold).mean()),
        "threshold": float(threshold),
        "impostors": len(neg),
    }


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The most accurate threshold, half-way between two neighbouring scores (a threshold on a
    score itself would favour the pairs it was chosen on)."""
    s = np.unique(scores)
    candidates = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]])
    accuracy = [((scores >= t) == same).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def fold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    """Protocol accuracy: each fold scored at the threshold chosen on the others."""
    per_fold = []
    for k in np.unique(folds):
        test = folds == k
        t = best_threshold(scores[~test], same[~test])
        per_fold.append(float(((scores[test] >= t) == same[test]).mean()))
    return {"mean": float(np.mean(per_fold)), "std": float(np.std(per_fold)), "folds": per_fold}


def verification_metrics(scores, same, folds) -> dict:
    """EER, TAR at FAR = 1e-3 and cross-validated accuracy of similarity ``scores``."""
    scores, same, folds = np.asarray(scores, float), np.asarray(same, bool), np.asarray(folds)
    if same.all() or not same.any():
        raise DataError("verification needs both same-person and different-person pairs")
    if len(np.unique(folds)) < 2:
        raise DataError("verification needs at least two folds of pairs (one picks the threshold)")
    eer, eer_threshold = equal_error_rate(scores, same)
    return {
        "pairs": len(scores),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "tar_at_far_1e-3": tar_at_far(scores, same),
        "accuracy": fold_accuracy(scores, same, folds),
    }
