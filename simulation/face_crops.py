"""Faces of the emotion and mask sets shaped like a UTKFace chip, so that every visitor is drawn
alike (:mod:`simulation.figures` draws the whole image into the face box).

- **Mask crops** are loose: the face's annotated box grown 50 % each side. A UTKFace chip frames
  a face tighter, about forehead to chin with the ears at its sides, so the chip is cut around
  the box: a square ``MASK_CHIP_SIDE`` times the box's width, centred on the box and moved down
  by ``MASK_CHIP_DROP`` of its side. Both were measured with MTCNN's landmarks (eye line, mouth)
  on 80 UTKFace chips and 141 unmasked crops of ``masks-dev``: where the chip must lie for the
  eyes and mouth to sit where they sit on a UTKFace chip. The box's width is the steadier
  measure (annotators differ more on forehead and chin than on cheeks): interquartile range
  24 % of the median against 32 % for its height.
- **FER-2013 faces** are tight 48 px grayscale crops, kept as they are: on video they are small
  and grey, as a low-resolution camera would show them, which is fine for scoring.

Both come out ``CHIP_PX`` square, smoothly resampled (bilinear), because the figure shrinks its
image with ``INTER_AREA``, which enlarges a small one in blocks (nearly nearest-neighbour).
"""

from __future__ import annotations

import cv2
import numpy as np

from model.datasets import FaceRecord

CHIP_PX = 200  # the side of a UTKFace chip
MASK_CHIP_SIDE = 1.2  # chip side / the annotated face box's width (median of the measure)
MASK_CHIP_DROP = 0.05  # chip centre below the box's centre, share of the chip side


def mask_chip_square(box: tuple[float, float, float, float]) -> tuple[float, float, float]:
    """``(x0, y0, side)`` of the chip's square in the crop's pixels for the face ``box``."""
    x1, y1, x2, y2 = box
    side = MASK_CHIP_SIDE * (x2 - x1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + MASK_CHIP_DROP * side
    return cx - side / 2, cy - side / 2, side


def cut_square(image: np.ndarray, square: tuple[float, float, float]) -> np.ndarray:
    """The ``square`` of ``image`` resampled to ``CHIP_PX``; where it runs off the image, the
    edge pixels are repeated (a crop clipped at its photo's edge)."""
    x0, y0, side = square
    s = CHIP_PX / side
    # pixel centres: chip pixel i samples image position x0 + (i + 0.5) / s - 0.5
    m = np.array([[s, 0, (0.5 - x0 - 0.5 / s) * s], [0, s, (0.5 - y0 - 0.5 / s) * s]])
    return cv2.warpAffine(
        image, m, (CHIP_PX, CHIP_PX), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def shape_face(kind: str, record: FaceRecord, image: np.ndarray) -> np.ndarray:
    """The image to draw for a face of a ``model.face_sets`` kind: a UTKFace chip as it is, a
    mask crop cut around its face, a FER face enlarged."""
    if kind == "mask":
        return cut_square(image, mask_chip_square(record.box))
    if kind == "emotion":
        h, w = image.shape[:2]
        return cut_square(image, (0.0, 0.0, float(max(h, w))))
    return image
