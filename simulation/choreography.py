"""The script of a synthetic clip: who comes when, and where each visitor walks.

At most ``visitors_max`` visitors are in frame at once, one per "lane": each walks in from a side,
approaches the camera (the face grows from about 55-65 % of its lingering size), lingers with
small natural motion (sway, a slight change of scale), and walks out to a side - possibly
crossing someone who is lingering. While lingering the face box is ``face_frac`` of the frame
height (11-23 % by default: about 120-250 px at 1080p, typical of a kiosk camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simulation.figures import BODY_HALF_W
from simulation.render_options import RenderOptions

# Sprites are drawn once, at the largest size they are ever shown at: the sway below scales the
# face by at most 1.04, walking never above 1.
MAX_SWAY_SCALE = 1.05
# A busy stretch of a kiosk day (the day schedule) lasts this long, seconds, before scaling.
BUSY_S = (40.0, 100.0)


@dataclass
class ScriptedVisit:
    """One visitor's part in the clip: when they come, where they linger and how they move."""

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


def plan_visits(opt: RenderOptions, rng: np.random.Generator) -> list[ScriptedVisit]:
    """Who comes when: in each busy window (the whole clip on the steady schedule), ``visitors_max``
    lanes, each a sequence of visits separated by gaps; numbered from 1 in order of arrival."""
    end = opt.duration_s - 0.1
    windows = [(0.0, end)] if opt.schedule == "steady" else busy_windows(opt)
    plans: list[ScriptedVisit] = []
    for start, stop in windows:
        plans += _plan_window(opt, rng, start, stop)
    plans.sort(key=lambda v: (v.t0, v.lane))
    if opt.visitors_total is not None:
        plans = plans[: opt.visitors_total]
    for i, v in enumerate(plans, start=1):
        v.id = i
    return plans


def _plan_window(opt: RenderOptions, rng, start: float, end: float) -> list[ScriptedVisit]:
    """The visits of every lane between ``start`` and ``end`` (seconds)."""
    plans = []
    for lane in range(opt.visitors_max):
        t = rng.uniform(0.2, opt.gap_s[1] * (1 + lane)) if lane else rng.uniform(0.2, 2.0)
        t += start
        while True:
            walk_in, walk_out = rng.uniform(*opt.walk_s), rng.uniform(*opt.walk_s)
            linger = rng.uniform(*opt.linger_s)
            linger = min(linger, end - t - walk_in - walk_out)
            if linger < opt.linger_s[0]:
                break
            plans.append(_visit(opt, rng, lane, float(t), (walk_in, linger, walk_out)))
            t += walk_in + linger + walk_out + rng.uniform(*opt.gap_s)
    return plans


def busy_windows(opt: RenderOptions) -> list[tuple[float, float]]:
    """The day schedule's busy stretches, (start, end) seconds: BUSY_S long each (scaled so
    they cover ``busy_share`` of the clip), at random places between quiet stretches of random
    lengths; drawn from their own generator, so the visits' draws stay those of the seed."""
    rng = np.random.default_rng([opt.seed, 4])
    busy = opt.busy_share * opt.duration_s
    n = max(1, round(busy / np.mean(BUSY_S)))
    lengths = rng.uniform(*BUSY_S, n)
    lengths *= busy / lengths.sum()
    quiet = rng.uniform(0.5, 1.5, n + 1)
    quiet *= (opt.duration_s - busy) / quiet.sum()
    windows, t = [], float(quiet[0])
    for length, gap in zip(lengths, quiet[1:], strict=True):
        windows.append((t, min(t + float(length), opt.duration_s - 0.1)))
        t += float(length + gap)
    return windows


def _visit(opt: RenderOptions, rng, lane: int, t0: float, times) -> ScriptedVisit:
    """Where and how the visit in ``lane`` starting at ``t0`` lingers (``times``: walk in,
    linger, walk out); the draws follow a fixed order, so a seed gives the same clip."""
    w, h, lanes = opt.width, opt.height, opt.visitors_max
    walk_in, linger, walk_out = times
    f = rng.uniform(*opt.face_frac) * h
    x = (lane + 0.5) / lanes * w + rng.uniform(-0.05, 0.05) * w
    x = float(np.clip(x, 0.6 * f + 2, w - 0.6 * f - 2))
    y = float(np.clip(rng.uniform(0.3, 0.45) * h, 0.6 * f + 2, h - 0.6 * f - 2))
    sway = (
        rng.uniform(0.05, 0.15) * f,  # horizontal amplitude
        rng.uniform(0.12, 0.35),  # its frequency
        rng.uniform(0.01, 0.03) * f,  # vertical amplitude
        rng.uniform(0.2, 0.5),
        rng.uniform(0.01, 0.04),  # relative scale amplitude, below MAX_SWAY_SCALE - 1
        rng.uniform(0.05, 0.2),
    )
    return ScriptedVisit(
        id=0,
        lane=lane,
        t0=t0,
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


def trajectory(v: ScriptedVisit, t: np.ndarray, width: int) -> tuple[np.ndarray, ...]:
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
