"""Torch-free preprocessing of a face chip, shared by training and evaluation.

A chip (an aligned, cropped face such as a UTKFace 200x200 JPEG) becomes a network input by
1. decoding to RGB uint8,
2. a centred square crop covering ``crop`` of the shorter side,
3. a resize to ``size`` x ``size`` (area interpolation),
4. ``(x / 255 - mean) / std`` per channel, NCHW float32.

Steps 1-3 happen once into the uint8 cache used by training; step 4 is done in batch (in torch
while training, in numpy here for evaluation), so both feed faces identically.
"""

from __future__ import annotations

import cv2
import numpy as np

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


class DecodeError(ValueError):
    """The bytes are not a readable image."""


def decode_rgb(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> HxWx3 RGB uint8."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DecodeError("cannot decode image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def crop_box(height: int, width: int, crop: float) -> tuple[float, float, float]:
    """``(x0, y0, side)`` of the centred square crop in chip pixels."""
    side = crop * min(height, width)
    return (width - side) / 2.0, (height - side) / 2.0, side


def chip_to_input_matrix(height: int, width: int, size: int, crop: float) -> np.ndarray:
    """2x3 affine matrix mapping chip pixel coordinates to input pixel coordinates.

    Uses the pixel-centre convention of ``cv2.resize``/``cv2.warpAffine``: the centre of input
    pixel ``i`` samples chip position ``x0 + (i + 0.5) * side / size - 0.5``.
    """
    x0, y0, side = crop_box(height, width, crop)
    s = size / side
    return np.array(
        [[s, 0.0, (0.5 - x0) * s - 0.5], [0.0, s, (0.5 - y0) * s - 0.5]], dtype=np.float64
    )


def prepare_chip(rgb: np.ndarray, size: int, crop: float = 1.0) -> np.ndarray:
    """RGB uint8 chip -> ``size`` x ``size`` x 3 RGB uint8 network crop (steps 2-3)."""
    h, w = rgb.shape[:2]
    m = chip_to_input_matrix(h, w, size, crop)
    if crop == 1.0 and h == w:
        return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    # Equivalent to crop + resize for arbitrary (sub-pixel) crop boxes.
    scale = m[0, 0]
    flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    if scale < 1:
        x0, y0, side = crop_box(h, w, crop)
        x0i, y0i, sidei = int(round(x0)), int(round(y0)), int(round(side))
        rgb = rgb[y0i : y0i + sidei, x0i : x0i + sidei]
        return cv2.resize(rgb, (size, size), interpolation=flags)
    return cv2.warpAffine(rgb, m, (size, size), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def normalize(batch: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """NxHxWx3 (or HxWx3) RGB uint8 -> Nx3xHxW float32 normalised network input."""
    batch = np.asarray(batch)
    if batch.ndim == 3:
        batch = batch[None]
    x = batch.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def chip_crop(spec) -> float:
    """The share of a chip's shorter side a model file's network was trained on (its
    ``chip_crop`` metadata; files that predate the key used the whole chip)."""
    return float(spec.extra.get("chip_crop", "1.0"))


def chip_inputs(chips: list[np.ndarray], spec) -> np.ndarray:
    """Chips prepared exactly as in training, as a model file's normalised NCHW input
    (``spec``: the file's ``schemas.model_file.ModelSpec``)."""
    crop = chip_crop(spec)
    return normalize(
        np.stack([prepare_chip(c, spec.input_size, crop) for c in chips]), spec.mean, spec.std
    )
