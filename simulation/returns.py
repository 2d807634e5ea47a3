"""Who comes back, and who walks past close in front: the cases identity is measured on.

- **Returning visitors** (``RenderOptions.returns``): a share of the visits is made by someone
  who came before, at least ``return_gap_s`` after their last visit ended: the same face again,
  a new visit of the same person. The truth gives each visit its ``person`` (the id of that
  person's first visit).
- **Passers-by in front** (``RenderOptions.passers``): during a share of the lingers, someone
  walks past close to the camera, a body filling the frame's height, hiding the lingering face
  for 3-5 s: longer than the tracker bridges, so the track breaks while the visit goes on. The
  truth gives such a visit its ``hidden`` interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from simulation.choreography import ScriptedVisit
from simulation.render_options import RenderOptions

HIDDEN_S = (3.0, 5.0)  # how long a passer-by hides the face
MIN_LINGER_S = 8.0  # only lingers this long get a passer-by (the face is seen on both sides)


def assign_people(plans: list[ScriptedVisit], opt: RenderOptions, rng) -> list[int]:
    """The person (0, 1, ...) making each visit, in the plans' order (by arrival)."""
    people: list[int] = []
    last_end: list[float] = []  # per person, when their latest visit ended
    for v in plans:
        if opt.returns > 0 and rng.uniform() < opt.returns:
            # gone for the gap: never on screen twice at once
            ready = [p for p, end in enumerate(last_end) if v.t0 - end >= opt.return_gap_s]
            if ready:
                person = int(rng.choice(ready))
                people.append(person)
                last_end[person] = v.t1
                continue
        people.append(len(last_end))
        last_end.append(v.t1)
    return people


@dataclass(frozen=True)
class Passer:
    """Someone walking past in front of visit ``visit_id``'s lingering face."""

    visit_id: int
    x_face: float  # where they pass the face's centre, pixels
    t_mid: float  # when their centre passes it
    speed: float  # px/s, signed
    width: float  # body width, pixels
    colour: tuple[int, int, int]  # BGR
    hidden: tuple[float, float]  # when they cover the face box wholly or in part

    def x(self, t: float) -> float:
        return self.x_face + self.speed * (t - self.t_mid)


def plan_passers(plans: list[ScriptedVisit], opt: RenderOptions, rng) -> list[Passer]:
    """A passer-by for a share ``opt.passers`` of the lingers of at least ``MIN_LINGER_S``."""
    out = []
    for v in plans:
        if opt.passers <= 0 or v.linger < MIN_LINGER_S or rng.uniform() >= opt.passers:
            continue
        cover = rng.uniform(*HIDDEN_S)
        width = 1.5 * v.face_px
        t_mid = v.t0 + v.walk_in + rng.uniform(0.35, 0.65) * v.linger
        speed = (width + v.face_px) / cover * rng.choice([-1.0, 1.0])
        colour = tuple(int(c) for c in rng.integers(20, 90, 3))
        half = cover / 2
        out.append(
            Passer(
                v.id, v.x, float(t_mid), float(speed), width, colour, (t_mid - half, t_mid + half)
            )
        )
    return out


def draw_passers(frame: np.ndarray, passers: list[Passer], t: float) -> None:
    """Each passer-by in view at ``t``: a body filling the frame's height, nearest of all."""
    h, w = frame.shape[:2]
    for p in passers:
        x = p.x(t)
        x1, x2 = int(round(x - p.width / 2)), int(round(x + p.width / 2))
        if x2 < 0 or x1 >= w or abs(t - p.t_mid) > 30:
            continue
        cv2.rectangle(frame, (max(x1, 0), 0), (min(x2, w - 1), h - 1), p.colour, thickness=-1)


def identity_truth(visitors: list[dict], plans, people: list[int], passers, opt) -> None:
    """Add to the visitors' truth records: ``person`` (the id of the person's first visit) when
    the clip has returns, ``hidden`` (seconds) where a passer-by hides the face."""
    if opt.returns > 0:
        first = {}
        for v, person in zip(plans, people, strict=True):
            first.setdefault(person, v.id)
        for rec, person in zip(visitors, people, strict=True):
            rec["person"] = first[person]
    by_id = {rec["id"]: rec for rec in visitors}
    for p in passers:
        by_id[p.visit_id]["hidden"] = [round(p.hidden[0], 3), round(p.hidden[1], 3)]
