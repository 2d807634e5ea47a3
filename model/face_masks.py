"""Synthetic face masks drawn onto aligned UTKFace chips, labelled for the mask head.

Why: the mask crops hold 369 faces with a mask worn incorrectly, under 300 of them for training,
and the head recalls about half of them. The UTKFace chips are aligned, so nose, mouth and chin
sit at known places: a mask drawn over the nose is a mask worn, one whose top edge sits under
the nose tip (or under the mouth) a mask worn incorrectly, and the chip left as it is a face
without one. Their age and gender labels still hold, so those heads also see masked faces.

Each mask gets its own height, width, jaw, nose bump, colour (surgical blues and whites, cloth
colours, black), pleats and ear loops, rasterised at 4x and area-averaged to soft edges. The
drawing comes first in the augmentation, so the mask turns, scales and degrades with the face.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from model.eyeglasses import eyes_in_template
from schemas.model_file import CLASS_NAMES

# Where aligned UTKFace chips put eyes (left x, right x, y), nose tip y and mouth y, as fractions
# of the chip (pixel-centre convention): the shipped file's crop template.
CHIP_FACE = {"eyes": (0.3015, 0.6985, 0.2903), "nose_y": 0.5236, "mouth_y": 0.6964}
WORN, INCORRECT, NONE = (
    CLASS_NAMES["mask"].index(n) for n in ("with_mask", "with_incorrect_mask", "without_mask")
)
# Of the faces chosen: masks worn, worn incorrectly, left bare (labelled without a mask).
SHARES = (0.45, 0.30, 0.25)
DRAWN_WORN, DRAWN_INCORRECT, BARE = range(3)  # indices into SHARES
SUPERSAMPLE = 4


def draw_some(
    x: torch.Tensor,
    labels: torch.Tensor,
    eligible: torch.Tensor,
    share: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks on a ``share`` of the ``eligible`` faces of ``x`` (float NCHW in [0, 1], aligned
    chips) and their mask ``labels`` (-1 where a face has none) set to what was drawn."""
    n = x.shape[0]
    chosen = (torch.rand(n, generator=gen) < share) & eligible.cpu() & (labels.cpu() < 0)
    kind = torch.multinomial(torch.tensor(SHARES), n, replacement=True, generator=gen)
    idx = torch.nonzero(chosen).flatten()
    if len(idx) == 0:
        return x, labels
    label_of = torch.tensor([WORN, INCORRECT, NONE])
    labels = labels.clone()
    labels[idx.to(labels.device)] = label_of[kind[idx]].to(labels.device)
    drawn = idx[kind[idx] != BARE]
    if len(drawn):
        shape = x.shape[2:]
        masks = [draw_mask(*shape, bool(kind[i] == DRAWN_INCORRECT), gen) for i in drawn]
        alpha = torch.stack([m[0] for m in masks]).to(x.device)
        fill = torch.stack([m[1] for m in masks]).to(x.device)
        x = x.clone()
        x[drawn.to(x.device)] = x[drawn.to(x.device)] * (1 - alpha) + fill * alpha
    return x, labels


def draw_mask(h: int, w: int, incorrect: bool, gen: torch.Generator, face=CHIP_FACE):
    """One mask for an ``h`` x ``w`` chip: its coverage (1, h, w) and its colours (3, h, w)."""

    def u(lo: float, hi: float) -> float:
        return float(torch.rand(1, generator=gen)) * (hi - lo) + lo

    left, right, eye_y = face["eyes"]
    iod = (right - left) * w
    cx = (left + right) / 2 * w + u(-0.05, 0.05) * iod
    nose, mouth = face["nose_y"] * h, face["mouth_y"] * h
    if not incorrect:
        top = eye_y * h + u(0.28, 0.45) * iod  # over the bridge of the nose
    elif u(0, 1) < 0.75:
        top = nose + u(0.05, 0.25) * iod  # under the nose tip, over the lips
    else:
        top = mouth + u(0.10, 0.25) * iod  # on the chin
    bottom = max(top + 0.3 * iod, mouth + u(0.45, 0.70) * iod)
    outline = _outline(cx, top, bottom, iod, u) * SUPERSAMPLE
    big = np.zeros((h * SUPERSAMPLE, w * SUPERSAMPLE), np.uint8)
    cv2.fillPoly(big, [np.round(outline).astype(np.int32)], 255)
    loops = u(0, 1) < 0.6
    if loops:  # ear loops run from the mask's corners out to the edge of the face
        thick = max(1, round(u(0.02, 0.05) * iod * SUPERSAMPLE))
        for side in (0, len(outline) // 2 - 1):
            corner = outline[side]
            edge_x = 0 if corner[0] < cx * SUPERSAMPLE else w * SUPERSAMPLE - 1
            end = (edge_x, corner[1] - u(0.0, 0.3) * iod * SUPERSAMPLE)
            cv2.line(big, _pt(corner), _pt(end), 255, thick)
    alpha = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    return torch.from_numpy(alpha)[None], _fill(h, w, cx, top, bottom, iod, u)


def _outline(cx: float, top: float, bottom: float, iod: float, u) -> np.ndarray:
    """The mask's outline, clockwise from its top left corner (pixels)."""
    half_top, half_mid = u(0.80, 1.00) * iod, u(0.85, 1.05) * iod
    half_low = u(0.35, 0.60) * iod  # the jaw narrows towards the chin
    bump = u(0.03, 0.15) * iod  # the nose lifts the top edge in the middle
    t = np.linspace(-1, 1, 21)
    top_edge = np.stack([cx + t * half_top, top + bump * np.abs(t) ** 1.5], 1)
    v = np.linspace(0, 1, 12)[1:]
    # straight down the cheeks for the upper half, then in along the jaw
    jaw = np.clip((v - 0.45) / 0.55, 0, 1)
    half = half_mid + (half_low - half_mid) * (1 - np.cos(np.pi / 2 * jaw))
    side_y = top + bump + v * (bottom - top - bump) * 0.85
    right_side = np.stack([cx + half, side_y], 1)
    s = np.linspace(1, -1, 15)
    chin = np.stack([cx + s * half_low, side_y[-1] + (bottom - side_y[-1]) * (1 - s**2)], 1)
    left_side = right_side[::-1] * [-1, 1] + [2 * cx, 0]
    return np.vstack([top_edge, right_side, chin, left_side])


def _fill(h: int, w: int, cx: float, top: float, bottom: float, iod: float, u) -> torch.Tensor:
    """The mask's colours: a base colour shaded darker towards the sides (the mask curves away),
    with pleats on a surgical mask."""
    style = u(0, 1)
    if style < 0.45:  # surgical: pale blue, green or white
        base = np.array([u(0.55, 0.85), u(0.75, 0.92), u(0.82, 1.0)])
        base = base if u(0, 1) < 0.6 else np.full(3, u(0.82, 0.98))
    elif style < 0.8:  # cloth in any colour
        base = np.array([u(0.1, 0.9), u(0.1, 0.9), u(0.1, 0.9)])
    else:  # black or dark grey
        base = np.full(3, u(0.03, 0.25))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    shade = 1 - u(0.10, 0.30) * np.clip(np.abs(xs - cx) / iod, 0, 1) ** 2
    if style < 0.45:
        period = (bottom - top) / u(3.0, 4.5)
        shade = shade * (1 - 0.08 * (np.cos(2 * np.pi * (ys - top) / period) > 0.7))
    shade = shade * (1 + np.random.default_rng(int(u(0, 2**31))).normal(0, 0.02, (h, w)))
    fill = base[:, None, None] * shade[None]
    return torch.from_numpy(np.clip(fill, 0, 1).astype(np.float32))


def _pt(p) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def face_in_template(template, size: int) -> dict:
    """Eyes, nose tip and mouth (fractions, as ``CHIP_FACE``) of a model's crop template
    (``ModelSpec.crop_template``)."""
    t = np.asarray(template, np.float64)
    mouth_y = ((t[3, 1] + t[4, 1]) / 2 + 0.5) / size
    eyes = eyes_in_template(template, size)
    return {"eyes": eyes, "nose_y": (t[2, 1] + 0.5) / size, "mouth_y": mouth_y}


def draw_on_images(images: np.ndarray, seed: int, face=CHIP_FACE) -> np.ndarray:
    """A mask worn over the nose on every image of a uint8 NHWC array, reproducibly from
    ``seed``: how the age and gender heads hold up on masked faces."""
    gen = torch.Generator().manual_seed(seed)
    out = np.empty_like(images)
    h, w = images.shape[1:3]
    for i, image in enumerate(images):
        alpha, fill = draw_mask(h, w, incorrect=False, gen=gen, face=face)
        a = alpha.permute(1, 2, 0).numpy()
        drawn = image.astype(np.float32) * (1 - a) + fill.permute(1, 2, 0).numpy() * 255 * a
        out[i] = np.clip(np.round(drawn), 0, 255).astype(np.uint8)
    return out
