"""Stage 7, tracks → visitors: one age and gender per person, with dwell and attention time.

Each frame's answer is weighted by how much it can be trusted: face size, detector confidence and
frontalness. Age is the expectation of the weighted mean age distribution (averaging distributions
keeps a bimodal "20 or 40" honest where averaging point estimates would not); gender is the
weighted mean P(female). Tracks too short or with too small a face are dropped, and counted.
Attention is counted like dwell, one frame interval per analysed frame, over the frames whose
head pose faces the camera (``attention`` settings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.settings import AttentionSettings, VisitorSettings
from pipelines.tracks import Track
from schemas.bands import age_band

# Floor on the frontalness weight so a profile view still counts a little.
MIN_FRONTALNESS_WEIGHT = 0.05


@dataclass(frozen=True)
class Visitor:
    """One person's answers; the fields are the ``visitors`` table's own columns
    (``schemas.rows.visitor_rows`` adds the video's key and the wall-clock times)."""

    track_id: int
    start_s: float
    end_s: float
    dwell_s: float
    frames: int
    age: float
    age_std: float
    age_band: str
    gender: str
    gender_score: float  # weighted mean P(female)
    face_px: float  # median face size
    quality: float  # mean per-frame weight, 0-1 scale of confidence x frontalness
    # Where the model has the heads (None otherwise): mask status and emotion of the weighted
    # mean probabilities, that mask status's probability, every emotion's mean probability,
    # and the share of frames whose most likely emotion is happy.
    mask: str | None = None
    mask_score: float | None = None
    emotion: str | None = None
    emotion_scores: dict[str, float] | None = None
    happy_share: float | None = None
    # Seconds facing the camera, and whether that reaches attention.min_watch_s (None: the
    # attention settings were not given).
    attention_s: float | None = None
    watcher: bool | None = None
    # Tracker fragments stitched into this visit (1: none), and the per-day pseudonymous
    # person id where cross-video identity is enabled (``pipelines.identity``).
    fragments: int = 1
    person_id: str | None = None


def frames_needed(settings: VisitorSettings, picked_s: float, frame_interval_s: float) -> int:
    """``visitors.min_frames`` is a count of frames picked every ``picked_s`` seconds (decode.fps).
    A source with fewer frames per second than that gives one frame every ``frame_interval_s``:
    the same span of video then holds fewer frames, and at least two are needed."""
    if frame_interval_s <= picked_s:
        return settings.min_frames
    return max(2, math.ceil(settings.min_frames * picked_s / frame_interval_s - 1e-9))


def frame_weights(track: Track) -> np.ndarray:
    obs = track.observations
    size = np.array([o.size for o in obs])
    score = np.array([o.score for o in obs])
    front = np.maximum(np.array([o.frontalness for o in obs]), MIN_FRONTALNESS_WEIGHT)
    return size * score * front


def aggregate(
    track: Track,
    settings: VisitorSettings,
    frame_interval_s: float,
    min_frames: int | None = None,
    classes: Mapping[str, Sequence[str]] | None = None,
    attention: AttentionSettings | None = None,
) -> Visitor | None:
    """The visitor a track stands for, or None when the track is too weak to trust: seen in
    fewer than ``min_frames`` analysed frames (default ``settings.min_frames``; see
    ``frames_needed``) or with a median face under ``settings.min_face_px``. ``classes``: the
    model's class names by head (``ModelSpec.heads``), for the mask and emotion columns;
    ``attention``: the limits for ``attention_s`` and ``watcher``."""
    obs = track.observations
    face_px = float(np.median([o.size for o in obs]))
    needed = settings.min_frames if min_frames is None else min_frames
    if len(obs) < needed or face_px < settings.min_face_px:
        return None
    weights = frame_weights(track)
    weights = weights / weights.sum()
    probs = weights @ np.stack([o.age_probs for o in obs])
    years = np.arange(probs.shape[0])
    age = float(probs @ years)
    age_std = float(np.sqrt(probs @ (years - age) ** 2))
    female = float(weights @ np.array([o.gender_prob for o in obs]))
    quality = float(np.mean([o.score * o.frontalness for o in obs]))
    start, end = obs[0].t_s, obs[-1].t_s
    # Each analysed frame stands for one sampling interval of presence. Microseconds are finer
    # than any frame clock; the rounding keeps float sums like 3.0300000000000002 out of the
    # tables.
    dwell_s = round(end - start + frame_interval_s, 6)
    return Visitor(
        track_id=track.track_id,
        start_s=start,
        end_s=end,
        dwell_s=dwell_s,
        frames=len(obs),
        age=age,
        age_std=age_std,
        age_band=age_band(age, settings.age_bands),
        gender="female" if female >= 0.5 else "male",
        gender_score=female,
        face_px=face_px,
        quality=quality,
        fragments=track.fragments,
        **attributes(obs, weights, classes or {}),
        **watching(obs, attention, frame_interval_s, dwell_s),
    )


def facing(yaw: float | None, pitch: float | None, attention: AttentionSettings) -> bool:
    """Whether a head pose faces the camera; a face without a pose does not."""
    if yaw is None or pitch is None:
        return False
    return abs(yaw) <= attention.max_yaw_deg and abs(pitch) <= attention.max_pitch_deg


def watching(
    obs, attention: AttentionSettings | None, frame_interval_s: float, dwell_s: float
) -> dict:
    """``attention_s`` and ``watcher`` of a visitor's frames; empty without the settings.
    Frames the detector missed inside the track (a head turned too far, mostly) count towards
    dwell, not attention; a source with jittered timestamps could give more frames than the
    span holds, hence the cap at dwell."""
    if attention is None:
        return {}
    seen = sum(facing(o.yaw, o.pitch, attention) for o in obs) * frame_interval_s
    attention_s = round(min(seen, dwell_s), 6)
    return {"attention_s": attention_s, "watcher": attention_s >= attention.min_watch_s}


def attributes(obs, weights: np.ndarray, classes: Mapping[str, Sequence[str]]) -> dict:
    """The mask and emotion columns of a visitor from its frames' probabilities, weighted as
    age and gender are; empty where the model lacks the head."""
    out: dict = {}
    for head in ("mask", "emotion"):
        names = classes.get(head)
        if not names or any(head not in o.extra for o in obs):
            continue
        frames = np.stack([o.extra[head] for o in obs])
        mean = weights @ frames
        best = int(np.argmax(mean))
        out[head] = names[best]
        if head == "mask":
            out["mask_score"] = float(mean[best])
        else:
            out["emotion_scores"] = {n: float(p) for n, p in zip(names, mean, strict=True)}
            happy = list(names).index("happy") if "happy" in names else None
            read_happy = frames.argmax(1) == happy if happy is not None else np.zeros(len(obs))
            out["happy_share"] = float(np.mean(read_happy))
    return out
