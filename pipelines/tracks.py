"""Stage 6, predictions → tracks: follow each person through one video's analysed frames.

Greedy association per frame on a cost that combines overlap with the motion-predicted box,
centre distance in face sizes, and appearance (the model's own gender and age estimates, which
stay steady for one person). A track unseen for up to ``max_gap_s`` can still be resumed, so a
person who turns away for a moment stays one visitor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby
from typing import TYPE_CHECKING

import numpy as np

from common.geometry import box_size, iou
from pipelines.settings import TrackerSettings

if TYPE_CHECKING:  # types only: the tracker itself needs neither the detector nor the model
    from pipelines.crops import Sighting
    from pipelines.predictions import FacePrediction

Box = tuple[float, float, float, float]

# Motion is extrapolated at most this far; beyond it a lost face is looked for where it was last.
MAX_EXTRAPOLATION_S = 0.5
# How much a difference in P(female) or in age (per 50 years) adds to the association cost.
APPEARANCE_WEIGHT = 0.5


@dataclass(frozen=True)
class Observation:
    """One face in one analysed frame, with the model's answer for it."""

    sighting: Sighting
    prediction: FacePrediction

    @property
    def frame_index(self) -> int:
        return self.sighting.frame_index

    @property
    def t_s(self) -> float:
        return self.sighting.t_s

    @property
    def box(self) -> Box:
        return self.sighting.face.box

    @property
    def score(self) -> float:
        return self.sighting.face.score

    @property
    def landmarks(self) -> np.ndarray:  # (5, 2) frame pixels
        return self.sighting.face.landmarks

    @property
    def frontalness(self) -> float:
        return self.sighting.frontalness

    @property
    def yaw(self) -> float | None:  # degrees, 0 facing the camera (``pipelines.pose``)
        return self.sighting.yaw

    @property
    def pitch(self) -> float | None:
        return self.sighting.pitch

    @property
    def age(self) -> float:
        return self.prediction.age

    @property
    def age_probs(self) -> np.ndarray:  # (101,)
        return self.prediction.age_probs

    @property
    def gender_prob(self) -> float:  # P(female)
        return self.prediction.gender_prob

    @property
    def extra(self) -> dict[str, np.ndarray]:  # class probabilities of further heads
        return self.prediction.extra

    @property
    def size(self) -> float:
        return box_size(self.box)

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2


@dataclass
class Track:
    track_id: int
    observations: list[Observation] = field(default_factory=list)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box px/s, smoothed
    fragments: int = 1  # tracker tracks joined into this one (``pipelines.stitching``)

    @property
    def last(self) -> Observation:
        return self.observations[-1]

    def predicted_box(self, t_s: float) -> Box:
        dt = min(t_s - self.last.t_s, MAX_EXTRAPOLATION_S)
        return tuple(np.asarray(self.last.box) + self.velocity * dt)

    def add(self, obs: Observation) -> None:
        if self.observations:
            dt = obs.t_s - self.last.t_s
            if dt > 0:
                measured = (np.asarray(obs.box) - np.asarray(self.last.box)) / dt
                self.velocity = 0.5 * self.velocity + 0.5 * measured
        self.observations.append(obs)

    def appearance(self) -> tuple[float, float]:
        recent = self.observations[-5:]
        return (
            float(np.mean([o.gender_prob for o in recent])),
            float(np.mean([o.age for o in recent])),
        )


def _cost(track: Track, obs: Observation, settings: TrackerSettings) -> float | None:
    """Association cost, or None where the face cannot belong to the track."""
    predicted = track.predicted_box(obs.t_s)
    ratio = obs.size / track.last.size
    if max(ratio, 1 / ratio) > settings.max_size_ratio:
        return None
    overlap = iou(predicted, obs.box)
    px, py = (predicted[0] + predicted[2]) / 2, (predicted[1] + predicted[3]) / 2
    shift = np.hypot(obs.center[0] - px, obs.center[1] - py) / max(track.last.size, 1.0)
    if overlap < settings.min_iou and shift > settings.max_center_shift:
        return None
    gender, age = track.appearance()
    appearance = abs(obs.gender_prob - gender) + abs(obs.age - age) / 50
    return (1 - overlap) + shift + APPEARANCE_WEIGHT * appearance


def track_faces(observations: list[Observation], settings: TrackerSettings) -> list[Track]:
    """Split one video's observations into tracks (ids from 1, in order of first appearance)."""
    ordered = sorted(observations, key=lambda o: (o.t_s, o.frame_index))
    active: list[Track] = []
    finished: list[Track] = []
    next_id = 1
    for _, frame_obs in groupby(ordered, key=lambda o: o.frame_index):
        frame_obs = list(frame_obs)
        t = frame_obs[0].t_s
        still_active = []
        for track in active:
            (still_active if t - track.last.t_s <= settings.max_gap_s else finished).append(track)
        active = still_active
        pairs = []
        for ti, track in enumerate(active):
            for oi, obs in enumerate(frame_obs):
                cost = _cost(track, obs, settings)
                if cost is not None:
                    pairs.append((cost, ti, oi))
        used_tracks, used_obs = set(), set()
        for _, ti, oi in sorted(pairs):
            if ti in used_tracks or oi in used_obs:
                continue
            active[ti].add(frame_obs[oi])
            used_tracks.add(ti)
            used_obs.add(oi)
        for oi, obs in enumerate(frame_obs):
            if oi not in used_obs:
                track = Track(track_id=next_id)
                track.add(obs)
                active.append(track)
                next_id += 1
    return sorted(finished + active, key=lambda tr: tr.track_id)
