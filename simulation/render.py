"""Render a synthetic kiosk clip with ground truth.

A static, procedurally drawn indoor background; visitors (at most ``visitors_max`` at once) who walk
in from a side, approach the camera (the face grows), linger with small natural motion (sway, a
slight change of scale), and walk out to a side - possibly crossing someone who is lingering. Each
visitor is a head (a sprite) on a neck and a shaded torso; the face is a labelled face image (a
UTKFace chip, say) drawn whole with rounded, feathered corners, at a size typical of a kiosk
camera: 11-23 % of the frame height while lingering (about 120-250 px at 1080p), about 55-65 %
of that on arrival.

Speed: every visitor's head sprite is drawn once, premultiplied; a frame is a copy of the
background plus, per visitor, a few filled polygons (torso, neck), one resize of the head sprite
and two saturating OpenCV ops over the head's box. The frame goes to the encoder as YUV 4:2:0
converted by OpenCV (BT.601, limited range, as FFmpeg's default).

Ground truth (``<clip>.truth.json``), all times in seconds from the start of the clip::

    {"version": 1,
     "clip": {"file", "renderer", "width", "height", "fps", "frames", "duration_s", "codec",
              "seed", ...},
     "visitors": [{"id", "age", "gender", "face", "enter_s", "leave_s", "appear_s",
                   "disappear_s", "entry_side", "exit_side", "face_px",
                   "boxes": [[t_s, x1, y1, x2, y2], ...]}, ...]}

``enter_s``/``leave_s`` bound the frames where the visitor's face box (the square the face image is
drawn into) lies wholly inside the frame; ``appear_s``/``disappear_s`` where any part of the
visitor's body is in frame. Occlusion by another visitor who walks past is not subtracted.
``face_px`` is the median face box side while the face is wholly visible; ``boxes`` samples the
face box once per ``boxes_every_s`` while it is wholly visible.
"""

from __future__ import annotations

import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from simulation import SimulationError
from simulation.faces import Face, FaceSource, sample_faces

CODEC_ALIASES = {
    "h264": "libx264",
    "x264": "libx264",
    "libx264": "libx264",
    "h265": "libx265",
    "hevc": "libx265",
    "x265": "libx265",
    "libx265": "libx265",
    "mpeg4": "mpeg4",
}
DEFAULT_CRF = {"libx264": 23, "libx265": 28}
DEFAULT_PRESET = {"libx264": "veryfast", "libx265": "ultrafast"}

# How faces are drawn, recorded in the truth and in cached clips' names: bump it whenever the
# drawing changes, so that a clip is never scored as if drawn by other code (2: the whole face
# image instead of an oval under a hair cap).
RENDERER = 2

# Head sprite layout in units of the face box side: face centre at (HEAD_W / 2, HEAD_TOP).
HEAD_W, HEAD_H, HEAD_TOP = 1.3, 1.5, 0.8
BODY_HALF_W = 1.2  # half the shoulder width, same units
MAX_SWAY_SCALE = 1.05  # the sprite is drawn at the largest size it is ever shown at


@dataclass
class RenderOptions:
    width: int = 1920
    height: int = 1080
    fps: float = 30.0
    duration_s: float = 60.0
    codec: str = "libx264"
    crf: int | None = None  # libx264/libx265 quality; default 23 / 28
    bitrate: int | None = None  # bits per second; mpeg4 default ~0.07 bit per pixel per frame
    preset: str | None = None  # libx264 default veryfast, libx265 ultrafast
    seed: int = 0
    visitors_max: int = 3  # at most this many visitors in frame at any instant
    visitors_total: int | None = None  # cap on the number of visitors in the clip
    walk_s: tuple[float, float] = (1.5, 3.0)  # walking in, and walking out
    linger_s: tuple[float, float] = (4.0, 20.0)
    gap_s: tuple[float, float] = (0.5, 8.0)  # pause before the next visitor in the same "lane"
    face_frac: tuple[float, float] = (0.11, 0.23)  # face box side / frame height while lingering
    boxes_every_s: float = 1.0  # 0: no per-visitor boxes in the truth
    start_time: str | None = None  # ISO time written as the container's creation_time

    def validate(self) -> None:
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise SimulationError(f"size must be even and at least 16x16, got {self.size}")
        if not 1 <= self.fps <= 240:
            raise SimulationError(f"fps must be between 1 and 240, got {self.fps}")
        if not 0 < self.duration_s <= 6 * 3600:
            raise SimulationError(f"duration must be between 0 and 6 hours, got {self.duration_s}")
        if not 0 <= self.visitors_max <= 10:
            raise SimulationError(f"visitors-max must be 0..10, got {self.visitors_max}")
        for name in ("walk_s", "linger_s", "gap_s", "face_frac"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise SimulationError(f"{name} must be a range 0 < min <= max, got {lo}:{hi}")
        if self.face_frac[1] > 0.45:
            raise SimulationError("face_frac above 0.45 of the frame height does not fit")
        self.codec = resolve_codec(self.codec)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def frames(self) -> int:
        return max(1, round(self.duration_s * self.fps))


def resolve_codec(name: str) -> str:
    codec = CODEC_ALIASES.get(name.lower())
    if codec is None:
        raise SimulationError(f"unknown codec {name!r}; use libx264, mpeg4 or libx265")
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        raise SimulationError(f"this PyAV build has no {codec} encoder") from None
    return codec


# ----------------------------------------------------------------------------------- background


def make_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A plausible indoor scene (wall, floor, door, posters, window, shelf, plant), BGR uint8."""
    w, h = width, height
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    wall = rng.uniform(150, 225, 3).astype(np.float32) * rng.uniform(0.85, 1.0, 3)
    lamp_x = rng.uniform(0.2, 0.8)
    light = 1.05 - 0.25 * yy - 0.2 * (xx - lamp_x) ** 2
    img = wall[None, None, :] * light[..., None]
    horizon = rng.uniform(0.68, 0.8)
    hy = int(horizon * h)
    floor = rng.uniform(70, 140, 3).astype(np.float32)
    fy = np.linspace(0.0, 1.0, h - hy, dtype=np.float32)[:, None, None]
    img[hy:] = floor[None, None, :] * (0.75 + 0.35 * fy) * np.ones((1, w, 1), np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)

    def col(lo=40, hi=230):
        return tuple(int(c) for c in rng.integers(lo, hi, 3))

    def px(x, y):
        return int(x * w), int(y * h)

    lw = max(1, round(h / 360))
    # floor tiles converging to a vanishing point, and a skirting board
    vx = rng.uniform(0.35, 0.65) * w
    line = tuple(int(c * 0.8) for c in floor)
    for k in np.linspace(-1.5, 2.5, 15):
        cv2.line(img, (int(vx), hy), (int(k * w), h), line, lw, cv2.LINE_AA)
    for k in range(1, 6):
        y = hy + int((h - hy) * (k / 6) ** 1.6)
        cv2.line(img, (0, y), (w, y), line, lw, cv2.LINE_AA)
    cv2.rectangle(img, (0, hy - 2 * lw - h // 90), (w, hy), col(60, 200), -1)
    # ceiling lights
    for x in rng.uniform(0.1, 0.9, rng.integers(1, 4)):
        cv2.ellipse(img, px(x, 0.02), (int(0.06 * w), int(0.025 * h)), 0, 0, 360, (250,) * 3, -1)
    # a door on one side
    dx = rng.choice([rng.uniform(0.02, 0.12), rng.uniform(0.75, 0.85)])
    door = col(50, 160)
    cv2.rectangle(img, px(dx, horizon - 0.5), px(dx + 0.12, horizon), door, -1)
    cv2.rectangle(img, px(dx, horizon - 0.5), px(dx + 0.12, horizon), (40, 40, 40), 2 * lw)
    cv2.circle(img, px(dx + 0.105, horizon - 0.24), max(2, h // 150), (200, 200, 200), -1)
    # a window with bars
    wx = rng.uniform(0.3, 0.55)
    sky = (int(rng.integers(200, 255)), int(rng.integers(200, 240)), int(rng.integers(170, 220)))
    cv2.rectangle(img, px(wx, 0.12), px(wx + 0.18, 0.42), sky, -1)
    cv2.rectangle(img, px(wx, 0.12), px(wx + 0.18, 0.42), (230, 230, 230), 3 * lw)
    cv2.line(img, px(wx + 0.09, 0.12), px(wx + 0.09, 0.42), (230, 230, 230), 2 * lw)
    cv2.line(img, px(wx, 0.27), px(wx + 0.18, 0.27), (230, 230, 230), 2 * lw)
    # posters with blocks and text-like bars
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.uniform(0.05, 0.85), rng.uniform(0.08, 0.4)
        pw, ph = rng.uniform(0.06, 0.11), rng.uniform(0.12, 0.22)
        cv2.rectangle(img, px(x0, y0), px(x0 + pw, y0 + ph), col(120, 250), -1)
        cv2.rectangle(img, px(x0 + 0.01, y0 + 0.02), px(x0 + pw - 0.01, y0 + ph * 0.5), col(), -1)
        for k in range(3):
            yb = y0 + ph * (0.6 + 0.11 * k)
            cv2.line(img, px(x0 + 0.01, yb), px(x0 + pw * 0.8, yb), col(0, 90), 2 * lw)
    # a shelf with boxes
    sx = rng.uniform(0.55, 0.8)
    cv2.rectangle(img, px(sx, horizon - 0.3), px(sx + 0.15, horizon - 0.28), (60, 80, 110), -1)
    bx = sx + 0.005
    while bx < sx + 0.14:
        bw, bh = rng.uniform(0.015, 0.035), rng.uniform(0.04, 0.09)
        cv2.rectangle(img, px(bx, horizon - 0.3 - bh), px(bx + bw, horizon - 0.3), col(), -1)
        bx += bw + 0.004
    # a potted plant
    plx = rng.choice([0.04, 0.93]) + rng.uniform(-0.02, 0.02)
    pot = np.array([px(plx - 0.025, horizon - 0.02), px(plx + 0.025, horizon - 0.02)])
    pot = np.vstack([pot, [px(plx + 0.018, horizon + 0.05), px(plx - 0.018, horizon + 0.05)]])
    for _ in range(14):
        c = (int(rng.integers(20, 70)), int(rng.integers(90, 170)), int(rng.integers(20, 70)))
        cxy = px(plx + rng.uniform(-0.04, 0.04), horizon - rng.uniform(0.04, 0.2))
        ax = (int(rng.uniform(0.01, 0.025) * w), int(rng.uniform(0.02, 0.05) * h))
        cv2.ellipse(img, cxy, ax, float(rng.uniform(0, 180)), 0, 360, c, -1, cv2.LINE_AA)
    cv2.fillConvexPoly(img, pot.astype(np.int32), (40, 70, 140), cv2.LINE_AA)

    # soften, add a fixed sensor-like texture and a vignette
    img = cv2.GaussianBlur(img, (0, 0), max(0.6, h / 900))
    noise = rng.normal(0, 4.0, (max(2, h // 4), max(2, w // 4))).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR)
    noise += rng.normal(0, 1.5, (h, w)).astype(np.float32)
    vig = 1.0 - 0.22 * ((xx - 0.5) ** 2 * 2.0 + (yy - 0.5) ** 2 * 2.0)
    out = img.astype(np.float32) * vig[..., None] + noise[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------- sprites


@dataclass
class Person:
    """A visitor's look. The head (hair, skin, the face image) is a premultiplied sprite resized
    per frame; the neck and the shaded torso are plain polygons drawn straight into the frame."""

    premul: np.ndarray  # head sprite, BGR premultiplied by alpha, uint8
    alpha: np.ndarray  # its alpha, uint8
    unit: float  # face box side in sprite pixels
    shirt: tuple[tuple[int, int, int], ...]  # torso colours, outer (shadow) to inner (lit)
    neck: tuple[int, int, int]


def make_person(face: np.ndarray, unit: float, rng: np.random.Generator) -> Person:
    """A head sprite with the face image in a ``unit``-sized box, plus body colours.

    The image is drawn whole, its corners rounded and its edge feathered, so each visitor keeps
    their own hair, beard and ears, as a camera sees them. (Until 2026-11-26 an oval cut from the
    image sat under a drawn hair cap, which gave every man a bob; on video the model then read
    men as women that it read right on the photos: MODEL_CARD.md, "Choosing on video".) The hair
    drawn behind the image, seen above it, takes the colour of the image's top rows, not of the
    label."""
    u = float(unit)
    sw, sh = int(math.ceil(HEAD_W * u)), int(math.ceil(HEAD_H * u))
    cx, cy = sw / 2.0, HEAD_TOP * u
    color = np.zeros((sh, sw, 3), np.float32)
    alpha = np.zeros((sh, sw), np.float32)
    sub = 4  # fixed-point subpixel bits for cv2 drawing

    def shape(c, axes, bgr):
        m = np.zeros((sh, sw), np.float32)
        centre = (int(c[0] * (1 << sub)), int(c[1] * (1 << sub)))
        ax = (max(1, int(axes[0] * (1 << sub))), max(1, int(axes[1] * (1 << sub))))
        cv2.ellipse(m, centre, ax, 0.0, 0, 360, 1.0, -1, cv2.LINE_AA, sub)
        color[:] = color * (1 - m[..., None]) + bgr[None, None, :] * m[..., None]
        np.maximum(alpha, m, out=alpha)

    chip = cv2.resize(face, (max(2, round(u)), max(2, round(u))), interpolation=cv2.INTER_AREA)
    k = chip.shape[0]
    centre = chip[int(k * 0.4) : int(k * 0.7), int(k * 0.3) : int(k * 0.7)].reshape(-1, 3)
    skin = np.median(centre, axis=0).astype(np.float32)
    top = chip[: max(1, int(k * 0.08))].reshape(-1, 3)
    hair = np.median(top, axis=0).astype(np.float32)
    shape((cx, cy - 0.14 * u), (0.52 * u, 0.6 * u), hair)  # hair behind the head
    shape((cx, cy + 0.02 * u), (0.44 * u, 0.56 * u), skin)  # head, seen below the chin

    # the face image through a rounded square (a superellipse) feathered over 4 % of its side
    r = np.abs((np.arange(k, dtype=np.float32) + 0.5) / k * 2 - 1)
    d = (r[None, :] ** 6 + r[:, None] ** 6) ** (1 / 6)
    mask = np.clip((0.97 - d) / 0.08, 0.0, 1.0)
    x0, y0 = int(round(cx - k / 2)), int(round(cy - k / 2))
    region = color[y0 : y0 + k, x0 : x0 + k]
    region[:] = region * (1 - mask[..., None]) + chip.astype(np.float32) * mask[..., None]
    np.maximum(alpha[y0 : y0 + k, x0 : x0 + k], mask, out=alpha[y0 : y0 + k, x0 : x0 + k])

    a = np.clip(alpha, 0.0, 1.0)
    premul = np.clip(color * a[..., None] + 0.5, 0, 255).astype(np.uint8)
    shirt = rng.uniform(35, 215, 3)
    shades = tuple(tuple(int(c) for c in np.clip(shirt * f, 0, 255)) for f in (0.62, 0.82, 1.0))
    neck = tuple(int(c) for c in skin * 0.78)
    return Person(premul, np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8), u, shades, neck)


# Torso outline in face units, relative to the face centre (x right, y down); it runs down past
# the bottom of the frame. Inner copies, narrowed, are drawn lighter to make it look round.
_TORSO = np.array(
    [(-0.3, 0.62), (0.3, 0.62), (0.85, 0.85), (1.05, 1.15), (1.15, 1.6), (1.2, 9.0)]
    + [(-1.2, 9.0), (-1.15, 1.6), (-1.05, 1.15), (-0.85, 0.85)],
    np.float64,
)
_NECK = np.array([(-0.17, 0.3), (0.17, 0.3), (0.19, 0.75), (-0.19, 0.75)], np.float64)
_SHIFT = 4


def _poly(frame, pts, fx, fy, side, color, squeeze=1.0):
    p = np.empty_like(pts)
    p[:, 0] = fx + pts[:, 0] * side * squeeze
    p[:, 1] = fy + pts[:, 1] * side
    p[:, 1] = np.minimum(p[:, 1], frame.shape[0] + 4)
    cv2.fillPoly(frame, [np.round(p * (1 << _SHIFT)).astype(np.int32)], color, cv2.LINE_AA, _SHIFT)


def composite(frame: np.ndarray, person: Person, fx: float, fy: float, face_px: float) -> None:
    """Draw ``person`` into ``frame`` in place with its face box of side ``face_px`` at (fx, fy)."""
    for color, squeeze in zip(person.shirt, (1.0, 0.8, 0.5), strict=True):
        _poly(frame, _TORSO, fx, fy, face_px, color, squeeze)
    _poly(frame, _NECK, fx, fy, face_px, person.neck)

    s = face_px / person.unit
    sh, sw = person.premul.shape[:2]
    tw, th = max(1, round(sw * s)), max(1, round(sh * s))
    ox, oy = round(fx - HEAD_W / 2 * face_px), round(fy - HEAD_TOP * face_px)
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + tw, w), min(oy + th, h)
    if x0 >= x1 or y0 >= y1:
        return
    premul = cv2.resize(person.premul, (tw, th), interpolation=cv2.INTER_LINEAR)
    inv = cv2.resize(person.alpha, (tw, th), interpolation=cv2.INTER_LINEAR)
    sl = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
    inv = cv2.cvtColor(cv2.bitwise_not(inv[sl]), cv2.COLOR_GRAY2BGR)
    roi = frame[y0:y1, x0:x1]
    cv2.multiply(roi, inv, dst=roi, scale=1.0 / 255.0)
    cv2.add(roi, premul[sl], dst=roi)


# ---------------------------------------------------------------------------------- choreography


@dataclass
class Visitor:
    id: int
    lane: int
    t0: float  # starts walking in (off screen)
    walk_in: float
    linger: float
    walk_out: float
    face_px: float  # face box side while lingering
    x: float  # linger position of the face centre, pixels
    y: float
    entry_side: str
    exit_side: str
    s_far: float  # scale on arrival relative to face_px
    s_exit: float
    sway: tuple[float, float, float, float, float, float] = field(default=(0, 0, 0, 0, 0, 0))

    @property
    def t1(self) -> float:
        return self.t0 + self.walk_in + self.linger + self.walk_out


def plan_visitors(opt: RenderOptions, rng: np.random.Generator) -> list[Visitor]:
    """Who comes when: ``visitors_max`` lanes, each a sequence of visitors separated by gaps."""
    w, h, lanes = opt.width, opt.height, opt.visitors_max
    end = opt.duration_s - 0.1
    plans: list[Visitor] = []
    for lane in range(lanes):
        t = rng.uniform(0.2, opt.gap_s[1] * (1 + lane)) if lane else rng.uniform(0.2, 2.0)
        while True:
            walk_in, walk_out = rng.uniform(*opt.walk_s), rng.uniform(*opt.walk_s)
            linger = rng.uniform(*opt.linger_s)
            linger = min(linger, end - t - walk_in - walk_out)
            if linger < opt.linger_s[0]:
                break
            f = rng.uniform(*opt.face_frac) * h
            x = (lane + 0.5) / lanes * w + rng.uniform(-0.05, 0.05) * w
            x = float(np.clip(x, 0.6 * f + 2, w - 0.6 * f - 2))
            y = float(np.clip(rng.uniform(0.3, 0.45) * h, 0.6 * f + 2, h - 0.6 * f - 2))
            sway = (
                rng.uniform(0.05, 0.15) * f,  # horizontal amplitude
                rng.uniform(0.12, 0.35),  # its frequency
                rng.uniform(0.01, 0.03) * f,  # vertical amplitude
                rng.uniform(0.2, 0.5),
                rng.uniform(0.01, 0.04),  # relative scale amplitude
                rng.uniform(0.05, 0.2),
            )
            plans.append(
                Visitor(
                    id=0,
                    lane=lane,
                    t0=float(t),
                    walk_in=float(walk_in),
                    linger=float(linger),
                    walk_out=float(walk_out),
                    face_px=float(f),
                    x=x,
                    y=y,
                    entry_side=str(rng.choice(["left", "right"])),
                    exit_side=str(rng.choice(["left", "right"])),
                    s_far=float(rng.uniform(0.55, 0.65)),
                    s_exit=float(rng.uniform(0.8, 0.95)),
                    sway=tuple(float(v) for v in sway),
                )
            )
            t += walk_in + linger + walk_out + rng.uniform(*opt.gap_s)
    plans.sort(key=lambda v: (v.t0, v.lane))
    if opt.visitors_total is not None:
        plans = plans[: opt.visitors_total]
    for i, v in enumerate(plans, start=1):
        v.id = i
    return plans


def trajectory(v: Visitor, t: np.ndarray, width: int) -> tuple[np.ndarray, ...]:
    """Face centre x, y and face box side at times ``t`` (NaN side where not in the scene)."""
    f = v.face_px
    off = BODY_HALF_W * f + 4
    x_in = -off if v.entry_side == "left" else width + off
    x_out = -off if v.exit_side == "left" else width + off
    a, b = v.t0 + v.walk_in, v.t0 + v.walk_in + v.linger
    ax, fx, ay, fy, asc, fsc = v.sway

    tau = np.clip(t - a, 0.0, v.linger)
    sway_x = ax * np.sin(2 * np.pi * fx * tau)
    sway_y = ay * np.sin(2 * np.pi * fy * tau)
    sway_s = 1 + asc * np.sin(2 * np.pi * fsc * tau)
    tau_b = v.linger
    end_dx = ax * math.sin(2 * math.pi * fx * tau_b)
    end_dy = ay * math.sin(2 * math.pi * fy * tau_b)
    end_s = 1 + asc * math.sin(2 * math.pi * fsc * tau_b)

    p_in = 1 - (1 - np.clip((t - v.t0) / v.walk_in, 0, 1)) ** 2  # decelerating
    p_out = np.clip((t - b) / v.walk_out, 0, 1) ** 1.6  # accelerating
    step = np.abs(np.sin(2 * np.pi * 0.9 * (t - v.t0)))  # two steps a second

    walking_in, walking_out = t < a, t > b
    x = np.where(walking_in, x_in + (v.x - x_in) * p_in, v.x + sway_x)
    x = np.where(walking_out, v.x + end_dx + (x_out - v.x - end_dx) * p_out, x)
    scale = np.where(walking_in, v.s_far + (1 - v.s_far) * p_in, sway_s)
    scale = np.where(walking_out, end_s + (v.s_exit - end_s) * p_out, scale)
    side = f * scale
    y = v.y + sway_y + (1 - scale) * 0.1 * f
    y = np.where(walking_out, v.y + end_dy + (1 - scale) * 0.1 * f, y)
    y = y - np.where(walking_in | walking_out, 0.04 * side * step, 0.0)
    side = np.where((t < v.t0) | (t > v.t1), np.nan, side)
    return x, y, side


# ------------------------------------------------------------------------------------- rendering


def _open_output(path: Path, opt: RenderOptions):
    try:
        container = av.open(str(path), mode="w")
    except Exception as exc:
        raise SimulationError(f"cannot write {path}: {exc}") from None
    rate = Fraction(opt.fps).limit_denominator(1001)
    stream = container.add_stream(opt.codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = opt.width, opt.height, "yuv420p"
    stream.codec_context.time_base = 1 / rate
    stream.thread_type = "AUTO"
    options = {}
    if opt.codec in DEFAULT_CRF:
        if opt.bitrate:
            stream.bit_rate = int(opt.bitrate)
        else:
            options["crf"] = str(opt.crf if opt.crf is not None else DEFAULT_CRF[opt.codec])
        options["preset"] = opt.preset or DEFAULT_PRESET[opt.codec]
        if opt.codec == "libx265":
            options["x265-params"] = "log-level=error"
    else:
        stream.bit_rate = int(opt.bitrate or 0.07 * opt.width * opt.height * opt.fps)
    stream.options = options
    if opt.start_time:
        container.metadata["creation_time"] = opt.start_time
    return container, stream


def truth_path_for(clip: str | Path) -> Path:
    return Path(clip).with_suffix(".truth.json")


def render_clip(
    out: str | Path, faces: FaceSource | list[Face], opt: RenderOptions, progress=None
) -> dict:
    """Render the clip to ``out`` and its truth to ``<out>.truth.json``; return the truth."""
    opt.validate()
    out = Path(out)
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov", ".avi"):
        raise SimulationError(f"{out}: use a .mp4, .mkv, .mov or .avi file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimulationError(f"cannot create output folder {out.parent}: {exc.strerror}") from None
    w, h, fps = opt.width, opt.height, opt.fps
    plans = plan_visitors(opt, np.random.default_rng([opt.seed, 2]))
    if isinstance(faces, FaceSource):
        people = sample_faces(faces, len(plans), opt.seed)
    else:
        if len(faces) < len(plans):
            raise SimulationError(f"need {len(plans)} distinct faces, got {len(faces)}")
        people = list(faces[: len(plans)])
    background = make_background(w, h, np.random.default_rng([opt.seed, 1]))

    n = opt.frames
    times = np.arange(n, dtype=np.float64) / fps
    sprite_rng = np.random.default_rng([opt.seed, 3])
    tracks, visitors = [], []
    for v, person in zip(plans, people, strict=True):
        look = make_person(person.image, v.face_px * MAX_SWAY_SCALE, sprite_rng)
        x, y, side = trajectory(v, times, w)
        tracks.append((look, x, y, side))
        visitors.append(_truth_for(v, person, times, x, y, side, opt))

    container, stream = _open_output(out, opt)
    time_base = stream.codec_context.time_base
    buffers = [np.empty_like(background), np.empty_like(background)]

    def draw(i: int) -> av.VideoFrame:
        frame = buffers[i % 2]
        np.copyto(frame, background)
        present = [tr for tr in tracks if not math.isnan(tr[3][i])]
        present.sort(key=lambda tr: tr[3][i])  # farther (smaller) first
        for person, x, y, side in present:
            composite(frame, person, x[i], y[i], side[i])
        vf = av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), "yuv420p")
        vf.pts, vf.time_base = i, time_base
        return vf

    # Draw frame i + 1 on a worker thread while the encoder takes frame i (both release the GIL).
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(draw, 0)
            for i in range(n):
                vf = pending.result()
                if i + 1 < n:
                    pending = pool.submit(draw, i + 1)
                container.mux(stream.encode(vf))
                if progress is not None:
                    progress(1)
        container.mux(stream.encode(None))
    finally:
        container.close()

    truth = {
        "version": 1,
        "clip": {
            "file": out.name,
            "renderer": RENDERER,
            "width": w,
            "height": h,
            "fps": fps,
            "frames": n,
            "duration_s": n / fps,
            "codec": opt.codec,
            "seed": opt.seed,
            "visitors_max": opt.visitors_max,
            "start_time": opt.start_time,
            "options": _jsonable(asdict(opt)),
        },
        "visitors": visitors,
    }
    truth_path_for(out).write_text(dump_truth(truth))
    return truth


def dump_truth(truth: dict) -> str:
    """Indented JSON with every innermost list of numbers (a box, a range) on one line."""
    text = json.dumps(truth, indent=1)
    return (
        re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
        + "\n"
    )


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _truth_for(v: Visitor, person: Face, times, x, y, side, opt: RenderOptions) -> dict:
    w, h = opt.width, opt.height
    present = ~np.isnan(side)
    s = np.where(present, side, 0.0)
    x1, y1, x2, y2 = x - s / 2, y - s / 2, x + s / 2, y + s / 2
    in_frame = present & (x - BODY_HALF_W * s < w) & (x + BODY_HALF_W * s > 0)
    full = present & (x1 >= 0) & (y1 >= 0) & (x2 <= w) & (y2 <= h)
    idx_full, idx_in = np.flatnonzero(full), np.flatnonzero(in_frame)
    rec = {
        "id": v.id,
        "age": int(person.age),
        "gender": person.gender,
        "face": person.key,
        "enter_s": round(float(times[idx_full[0]]), 3) if idx_full.size else None,
        "leave_s": round(float(times[idx_full[-1]]), 3) if idx_full.size else None,
        "appear_s": round(float(times[idx_in[0]]), 3) if idx_in.size else None,
        "disappear_s": round(float(times[idx_in[-1]]), 3) if idx_in.size else None,
        "entry_side": v.entry_side,
        "exit_side": v.exit_side,
        "lane": v.lane,
        "face_px": round(float(np.median(s[full])), 1) if idx_full.size else None,
    }
    if opt.boxes_every_s > 0:
        boxes, next_t = [], 0.0
        for i in idx_full:
            if times[i] + 1e-9 >= next_t:
                boxes.append(
                    [round(float(times[i]), 3)] + [round(float(c[i]), 1) for c in (x1, y1, x2, y2)]
                )
                next_t = (math.floor(times[i] / opt.boxes_every_s + 1e-9) + 1) * opt.boxes_every_s
        rec["boxes"] = boxes
    return rec
