"""The face-crop template: where the five landmarks sit in the network's input crop.

Estimated from the training chips themselves: a face detector's landmarks on a sample of chips
(chip pixels, pixel-centre convention) are filtered, averaged, optionally made left/right
symmetric (training flips faces horizontally, so the model sees both orientations), and mapped
through exactly the chip -> input transform of ``model.preprocess`` (centred crop, resize).
Pure numpy, no detector here: ``jobs/export.py`` runs the detector and calls this.
"""

from __future__ import annotations

import numpy as np

from model.preprocess import chip_to_input_matrix

# Landmark order as pipelines.faces.LANDMARK_NAMES; MIRROR swaps left and right for a flip.
MIRROR = (1, 0, 2, 4, 3)


def valid_landmarks(sets: np.ndarray) -> np.ndarray:
    """Mask of plausible frontal landmark sets: eyes left of right, mouth below eyes."""
    s = np.asarray(sets, np.float64)
    eyes_ok = s[:, 0, 0] < s[:, 1, 0]
    mouth_ok = s[:, 3, 0] < s[:, 4, 0]
    below = np.minimum(s[:, 3, 1], s[:, 4, 1]) > np.maximum(s[:, 0, 1], s[:, 1, 1])
    return eyes_ok & mouth_ok & below & np.isfinite(s).all(axis=(1, 2))


def average_landmarks(sets, outlier_mad: float = 3.0) -> np.ndarray:
    """Mean of (N, 5, 2) landmark sets after dropping implausible ones and those whose points lie
    more than ``outlier_mad`` robust deviations from the per-point median."""
    s = np.asarray(sets, np.float64).reshape(-1, 5, 2)
    s = s[valid_landmarks(s)]
    if len(s) == 0:
        raise ValueError("no plausible landmark sets")
    med = np.median(s, axis=0)
    dev = np.abs(s - med)
    mad = np.median(dev, axis=0) * 1.4826 + 1e-6
    keep = (dev <= outlier_mad * mad).all(axis=(1, 2))
    if keep.sum() >= max(1, len(s) // 2):
        s = s[keep]
    return s.mean(axis=0)


def symmetrize(points: np.ndarray, width: float) -> np.ndarray:
    """Average (5, 2) points with their mirror image about the vertical centre of a ``width``-px
    image (pixel centres: x -> width - 1 - x), swapping left and right points."""
    p = np.asarray(points, np.float64)
    mirrored = p[list(MIRROR)].copy()
    mirrored[:, 0] = width - 1 - mirrored[:, 0]
    return (p + mirrored) / 2


def chip_to_input(points: np.ndarray, chip_hw: tuple[int, int], size: int, crop: float):
    """Map (K, 2) chip pixel coordinates into the network input crop."""
    m = chip_to_input_matrix(chip_hw[0], chip_hw[1], size, crop)
    p = np.asarray(points, np.float64)
    return p @ m[:, :2].T + m[:, 2]


def estimate_template(
    landmark_sets,
    chip_hw: tuple[int, int],
    size: int,
    crop: float = 1.0,
    symmetric: bool = True,
) -> np.ndarray:
    """(N, 5, 2) chip landmarks -> (5, 2) template in input-crop pixels."""
    mean = average_landmarks(landmark_sets)
    if symmetric:
        mean = symmetrize(mean, chip_hw[1])
    return chip_to_input(mean, chip_hw, size, crop)
