"""A visitor as drawn into a synthetic clip: a head sprite on a neck and a shaded torso.

The face is a labelled face photo drawn whole with rounded, feathered corners. Speed: the head
sprite is drawn once per visitor, premultiplied; per frame a visitor costs a few filled polygons
(torso, neck), one resize of the sprite and two saturating OpenCV ops over the head's box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Head sprite layout in units of the face box side: face centre at (HEAD_W / 2, HEAD_TOP).
HEAD_W, HEAD_H, HEAD_TOP = 1.3, 1.5, 0.8
BODY_HALF_W = 1.2  # half the shoulder width, same units

# Torso outline in face units, relative to the face centre (x right, y down); it runs down past
# the bottom of the frame. Inner copies, narrowed, are drawn lighter to make it look round.
_TORSO = np.array(
    [(-0.3, 0.62), (0.3, 0.62), (0.85, 0.85), (1.05, 1.15), (1.15, 1.6), (1.2, 9.0)]
    + [(-1.2, 9.0), (-1.15, 1.6), (-1.05, 1.15), (-0.85, 0.85)],
    np.float64,
)
_NECK = np.array([(-0.17, 0.3), (0.17, 0.3), (0.19, 0.75), (-0.19, 0.75)], np.float64)
_SHIFT = 4


@dataclass
class Figure:
    """A visitor's look. The head (hair, skin, the face image) is a premultiplied sprite resized
    per frame; the neck and the shaded torso are plain polygons drawn straight into the frame."""

    premul: np.ndarray  # head sprite, BGR premultiplied by alpha, uint8
    alpha: np.ndarray  # its alpha, uint8
    unit: float  # face box side in sprite pixels
    shirt: tuple[tuple[int, int, int], ...]  # torso colours, outer (shadow) to inner (lit)
    neck: tuple[int, int, int]


def make_figure(face: np.ndarray, unit: float, rng: np.random.Generator) -> Figure:
    """A head sprite with the face image in a ``unit``-sized box, plus body colours.

    The image is drawn whole, its corners rounded and its edge feathered, so each visitor keeps
    their own hair, beard and ears, as a camera sees them. (An oval cut from the image under a
    drawn hair cap gave every man a bob; on video the model then read men as women that it read
    right on the photos: docs/experiments/2026-11-25-choosing-on-video.md.) The hair drawn behind
    the image, seen above it, takes the colour of the image's top rows, not of the label."""
    u = float(unit)
    sw, sh = int(math.ceil(HEAD_W * u)), int(math.ceil(HEAD_H * u))
    cx, cy = sw / 2.0, HEAD_TOP * u
    color = np.zeros((sh, sw, 3), np.float32)
    alpha = np.zeros((sh, sw), np.float32)

    chip = cv2.resize(face, (max(2, round(u)), max(2, round(u))), interpolation=cv2.INTER_AREA)
    k = chip.shape[0]
    centre = chip[int(k * 0.4) : int(k * 0.7), int(k * 0.3) : int(k * 0.7)].reshape(-1, 3)
    skin = np.median(centre, axis=0).astype(np.float32)
    top = chip[: max(1, int(k * 0.08))].reshape(-1, 3)
    hair = np.median(top, axis=0).astype(np.float32)
    _ellipse(color, alpha, (cx, cy - 0.14 * u), (0.52 * u, 0.6 * u), hair)  # hair behind the head
    _ellipse(color, alpha, (cx, cy + 0.02 * u), (0.44 * u, 0.56 * u), skin)  # seen below the chin
    _photo(color, alpha, chip, int(round(cx - k / 2)), int(round(cy - k / 2)))

    a = np.clip(alpha, 0.0, 1.0)
    premul = np.clip(color * a[..., None] + 0.5, 0, 255).astype(np.uint8)
    shirt = rng.uniform(35, 215, 3)
    shades = tuple(tuple(int(c) for c in np.clip(shirt * f, 0, 255)) for f in (0.62, 0.82, 1.0))
    neck = tuple(int(c) for c in skin * 0.78)
    return Figure(premul, np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8), u, shades, neck)


def _ellipse(color, alpha, c, axes, bgr, sub: int = 4) -> None:
    """Paint a filled, antialiased ellipse over ``color`` and add it to ``alpha`` (in place);
    ``sub``: fixed-point subpixel bits for cv2 drawing."""
    m = np.zeros(alpha.shape, np.float32)
    centre = (int(c[0] * (1 << sub)), int(c[1] * (1 << sub)))
    ax = (max(1, int(axes[0] * (1 << sub))), max(1, int(axes[1] * (1 << sub))))
    cv2.ellipse(m, centre, ax, 0.0, 0, 360, 1.0, -1, cv2.LINE_AA, sub)
    color[:] = color * (1 - m[..., None]) + bgr[None, None, :] * m[..., None]
    np.maximum(alpha, m, out=alpha)


def _photo(color, alpha, chip: np.ndarray, x0: int, y0: int) -> None:
    """Paint the square face image at (x0, y0) through a rounded square (a superellipse)
    feathered over 4 % of its side, in place."""
    k = chip.shape[0]
    r = np.abs((np.arange(k, dtype=np.float32) + 0.5) / k * 2 - 1)
    d = (r[None, :] ** 6 + r[:, None] ** 6) ** (1 / 6)
    mask = np.clip((0.97 - d) / 0.08, 0.0, 1.0)
    region = color[y0 : y0 + k, x0 : x0 + k]
    region[:] = region * (1 - mask[..., None]) + chip.astype(np.float32) * mask[..., None]
    np.maximum(alpha[y0 : y0 + k, x0 : x0 + k], mask, out=alpha[y0 : y0 + k, x0 : x0 + k])


def _poly(frame, pts, fx, fy, side, color, squeeze=1.0):
    p = np.empty_like(pts)
    p[:, 0] = fx + pts[:, 0] * side * squeeze
    p[:, 1] = fy + pts[:, 1] * side
    p[:, 1] = np.minimum(p[:, 1], frame.shape[0] + 4)
    cv2.fillPoly(frame, [np.round(p * (1 << _SHIFT)).astype(np.int32)], color, cv2.LINE_AA, _SHIFT)


def composite(frame: np.ndarray, figure: Figure, fx: float, fy: float, face_px: float) -> None:
    """Draw ``figure`` into ``frame`` in place with its face box of side ``face_px`` at (fx, fy)."""
    for color, squeeze in zip(figure.shirt, (1.0, 0.8, 0.5), strict=True):
        _poly(frame, _TORSO, fx, fy, face_px, color, squeeze)
    _poly(frame, _NECK, fx, fy, face_px, figure.neck)

    s = face_px / figure.unit
    sh, sw = figure.premul.shape[:2]
    tw, th = max(1, round(sw * s)), max(1, round(sh * s))
    ox, oy = round(fx - HEAD_W / 2 * face_px), round(fy - HEAD_TOP * face_px)
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + tw, w), min(oy + th, h)
    if x0 >= x1 or y0 >= y1:
        return
    premul = cv2.resize(figure.premul, (tw, th), interpolation=cv2.INTER_LINEAR)
    inv = cv2.resize(figure.alpha, (tw, th), interpolation=cv2.INTER_LINEAR)
    sl = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
    inv = cv2.cvtColor(cv2.bitwise_not(inv[sl]), cv2.COLOR_GRAY2BGR)
    roi = frame[y0:y1, x0:x1]
    cv2.multiply(roi, inv, dst=roi, scale=1.0 / 255.0)
    cv2.add(roi, premul[sl], dst=roi)
