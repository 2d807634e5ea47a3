"""The static indoor scene behind a synthetic clip's visitors.

Every random draw comes from the one generator passed in, in a fixed order (room, floor, lights,
door, window, posters, shelf, plant, texture): the same seed gives the same scene, so keep that
order when changing the drawing (and bump ``simulation.clip_maker.RENDERER``).
"""

from __future__ import annotations

import cv2
import numpy as np


def make_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A plausible indoor scene (wall, floor, door, posters, window, shelf, plant), BGR uint8."""
    img, horizon, floor = _room(width, height, rng)
    _floor_and_lights(img, horizon, floor, rng)
    _door_and_window(img, horizon, rng)
    _posters(img, rng)
    _shelf(img, horizon, rng)
    _plant(img, horizon, rng)
    return _camera_look(img, rng)


def _ramps(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised row (column vector) and column (row vector) coordinates, 0 to 1."""
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    return yy, xx


def _colour(rng: np.random.Generator, lo: int = 40, hi: int = 230) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(lo, hi, 3))


def _px(img: np.ndarray, x: float, y: float) -> tuple[int, int]:
    """Pixel of the point at fractions ``x`` of the width and ``y`` of the height."""
    h, w = img.shape[:2]
    return int(x * w), int(y * h)


def _line_width(img: np.ndarray) -> int:
    return max(1, round(img.shape[0] / 360))


def _room(width: int, height: int, rng: np.random.Generator):
    """A lit wall over a shaded floor: the image (uint8), the horizon (fraction of the height)
    and the floor colour."""
    w, h = width, height
    yy, xx = _ramps(w, h)
    wall = rng.uniform(150, 225, 3).astype(np.float32) * rng.uniform(0.85, 1.0, 3)
    lamp_x = rng.uniform(0.2, 0.8)
    light = 1.05 - 0.25 * yy - 0.2 * (xx - lamp_x) ** 2
    img = wall[None, None, :] * light[..., None]
    horizon = rng.uniform(0.68, 0.8)
    hy = int(horizon * h)
    floor = rng.uniform(70, 140, 3).astype(np.float32)
    fy = np.linspace(0.0, 1.0, h - hy, dtype=np.float32)[:, None, None]
    img[hy:] = floor[None, None, :] * (0.75 + 0.35 * fy) * np.ones((1, w, 1), np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), horizon, floor


def _floor_and_lights(img, horizon: float, floor: np.ndarray, rng: np.random.Generator) -> None:
    """Floor tiles converging to a vanishing point, a skirting board, and ceiling lights."""
    h, w = img.shape[:2]
    hy, lw = int(horizon * h), _line_width(img)
    vx = rng.uniform(0.35, 0.65) * w
    line = tuple(int(c * 0.8) for c in floor)
    for k in np.linspace(-1.5, 2.5, 15):
        cv2.line(img, (int(vx), hy), (int(k * w), h), line, lw, cv2.LINE_AA)
    for k in range(1, 6):
        y = hy + int((h - hy) * (k / 6) ** 1.6)
        cv2.line(img, (0, y), (w, y), line, lw, cv2.LINE_AA)
    cv2.rectangle(img, (0, hy - 2 * lw - h // 90), (w, hy), _colour(rng, 60, 200), -1)
    for x in rng.uniform(0.1, 0.9, rng.integers(1, 4)):
        axes = (int(0.06 * w), int(0.025 * h))
        cv2.ellipse(img, _px(img, x, 0.02), axes, 0, 0, 360, (250,) * 3, -1)


def _door_and_window(img, horizon: float, rng: np.random.Generator) -> None:
    """A door on one side, and a window with bars."""
    h, lw = img.shape[0], _line_width(img)
    dx = rng.choice([rng.uniform(0.02, 0.12), rng.uniform(0.75, 0.85)])
    door = _colour(rng, 50, 160)
    top_left, bottom_right = _px(img, dx, horizon - 0.5), _px(img, dx + 0.12, horizon)
    cv2.rectangle(img, top_left, bottom_right, door, -1)
    cv2.rectangle(img, top_left, bottom_right, (40, 40, 40), 2 * lw)
    knob = _px(img, dx + 0.105, horizon - 0.24)
    cv2.circle(img, knob, max(2, h // 150), (200, 200, 200), -1)
    wx = rng.uniform(0.3, 0.55)
    sky = (int(rng.integers(200, 255)), int(rng.integers(200, 240)), int(rng.integers(170, 220)))
    frame = (230, 230, 230)
    cv2.rectangle(img, _px(img, wx, 0.12), _px(img, wx + 0.18, 0.42), sky, -1)
    cv2.rectangle(img, _px(img, wx, 0.12), _px(img, wx + 0.18, 0.42), frame, 3 * lw)
    cv2.line(img, _px(img, wx + 0.09, 0.12), _px(img, wx + 0.09, 0.42), frame, 2 * lw)
    cv2.line(img, _px(img, wx, 0.27), _px(img, wx + 0.18, 0.27), frame, 2 * lw)


def _posters(img, rng: np.random.Generator) -> None:
    """One to three posters, each a picture block over text-like bars."""
    lw = _line_width(img)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.uniform(0.05, 0.85), rng.uniform(0.08, 0.4)
        pw, ph = rng.uniform(0.06, 0.11), rng.uniform(0.12, 0.22)
        cv2.rectangle(img, _px(img, x0, y0), _px(img, x0 + pw, y0 + ph), _colour(rng, 120, 250), -1)
        block = (_px(img, x0 + 0.01, y0 + 0.02), _px(img, x0 + pw - 0.01, y0 + ph * 0.5))
        cv2.rectangle(img, *block, _colour(rng), -1)
        for k in range(3):
            yb = y0 + ph * (0.6 + 0.11 * k)
            bar = (_px(img, x0 + 0.01, yb), _px(img, x0 + pw * 0.8, yb))
            cv2.line(img, *bar, _colour(rng, 0, 90), 2 * lw)


def _shelf(img, horizon: float, rng: np.random.Generator) -> None:
    """A shelf with boxes of random widths and heights."""
    sx = rng.uniform(0.55, 0.8)
    board = (_px(img, sx, horizon - 0.3), _px(img, sx + 0.15, horizon - 0.28))
    cv2.rectangle(img, *board, (60, 80, 110), -1)
    bx = sx + 0.005
    while bx < sx + 0.14:
        bw, bh = rng.uniform(0.015, 0.035), rng.uniform(0.04, 0.09)
        box = (_px(img, bx, horizon - 0.3 - bh), _px(img, bx + bw, horizon - 0.3))
        cv2.rectangle(img, *box, _colour(rng), -1)
        bx += bw + 0.004


def _plant(img, horizon: float, rng: np.random.Generator) -> None:
    """A potted plant in a corner: leaves (ellipses), then the pot in front of them."""
    h, w = img.shape[:2]
    plx = rng.choice([0.04, 0.93]) + rng.uniform(-0.02, 0.02)
    rim = [_px(img, plx - 0.025, horizon - 0.02), _px(img, plx + 0.025, horizon - 0.02)]
    base = [_px(img, plx + 0.018, horizon + 0.05), _px(img, plx - 0.018, horizon + 0.05)]
    pot = np.vstack([np.array(rim), base])
    for _ in range(14):
        c = (int(rng.integers(20, 70)), int(rng.integers(90, 170)), int(rng.integers(20, 70)))
        cxy = _px(img, plx + rng.uniform(-0.04, 0.04), horizon - rng.uniform(0.04, 0.2))
        ax = (int(rng.uniform(0.01, 0.025) * w), int(rng.uniform(0.02, 0.05) * h))
        cv2.ellipse(img, cxy, ax, float(rng.uniform(0, 180)), 0, 360, c, -1, cv2.LINE_AA)
    cv2.fillConvexPoly(img, pot.astype(np.int32), (40, 70, 140), cv2.LINE_AA)


def _camera_look(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soften, add a fixed sensor-like texture and a vignette."""
    h, w = img.shape[:2]
    yy, xx = _ramps(w, h)
    img = cv2.GaussianBlur(img, (0, 0), max(0.6, h / 900))
    noise = rng.normal(0, 4.0, (max(2, h // 4), max(2, w // 4))).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR)
    noise += rng.normal(0, 1.5, (h, w)).astype(np.float32)
    vig = 1.0 - 0.22 * ((xx - 0.5) ** 2 * 2.0 + (yy - 0.5) ** 2 * 2.0)
    out = img.astype(np.float32) * vig[..., None] + noise[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)
