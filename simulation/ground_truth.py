"""A synthetic clip's ground truth: written next to the clip as ``<clip>.truth.json``.

All times are in seconds from the start of the clip::

    {"version": 1,
     "clip": {"file", "renderer", "width", "height", "fps", "frames", "duration_s", "codec",
              "seed", ...},
     "visitors": [{"id", "age", "gender", "face", ["source",] ["mask",] ["emotion",]
                   "enter_s", "leave_s", "appear_s", "disappear_s", "entry_side",
                   "exit_side", "face_px", "boxes": [[t_s, x1, y1, x2, y2], ...]}, ...]}

A visitor's labels are those of their face's set: ``age`` (years) and ``gender`` (``male`` or
``female``) for UTKFace and face lists, null for a face of an emotion or mask set; ``mask`` and
``emotion``, class names of ``schemas.model_file.CLASS_NAMES``, only where the face's set labels
them. ``face`` is the image's path in its source, and ``source`` the path of that source where
the clip was drawn from several.

``enter_s``/``leave_s`` bound the frames where the visitor's face box (the square the face image is
drawn into) lies wholly inside the frame; ``appear_s``/``disappear_s`` where any part of the
visitor's body is in frame. Occlusion by another visitor who walks past is not subtracted.
``face_px`` is the median face box side while the face is wholly visible; ``boxes`` samples the
face box once per ``boxes_every_s`` while it is wholly visible. Scoring reads it back with
:func:`simulation.scoring.load_truth`, which needs no part of the renderer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from simulation.choreography import ScriptedVisit
from simulation.figures import BODY_HALF_W
from simulation.photos import LabelledPhoto
from simulation.render_options import NEWER_DEFAULTS, RenderOptions


def truth_path_for(clip: str | Path) -> Path:
    return Path(clip).with_suffix(".truth.json")


def clip_truth(file: str, renderer: int, opt: RenderOptions, visitors: list[dict]) -> dict:
    """The whole truth of the clip named ``file``, drawn by ``renderer`` with ``opt``."""
    n = opt.frames
    return {
        "version": 1,
        "clip": {
            "file": file,
            "renderer": renderer,
            "width": opt.width,
            "height": opt.height,
            "fps": opt.fps,
            "frames": n,
            "duration_s": n / opt.fps,
            "codec": opt.codec,
            "seed": opt.seed,
            "visitors_max": opt.visitors_max,
            "start_time": opt.start_time,
            "options": _jsonable(_options(opt)),
        },
        "visitors": visitors,
    }


def dump_truth(truth: dict) -> str:
    """Indented JSON with every innermost list of numbers (a box, a range) on one line."""
    text = json.dumps(truth, indent=1)
    return (
        re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
        + "\n"
    )


def _options(opt: RenderOptions) -> dict:
    """The options that made the clip; those added later are left out at their defaults, so
    a clip's truth reads as it did before they existed."""
    options = asdict(opt)
    return {k: v for k, v in options.items() if k not in NEWER_DEFAULTS or v != NEWER_DEFAULTS[k]}


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def visit_truth(
    v: ScriptedVisit, photo: LabelledPhoto, times, x, y, side, opt: RenderOptions
) -> dict:
    """One visitor's record, from their face box (centre ``x``, ``y``, ``side``) at ``times``."""
    w, h = opt.width, opt.height
    present = ~np.isnan(side)
    s = np.where(present, side, 0.0)
    x1, y1, x2, y2 = x - s / 2, y - s / 2, x + s / 2, y + s / 2
    in_frame = present & (x - BODY_HALF_W * s < w) & (x + BODY_HALF_W * s > 0)
    full = present & (x1 >= 0) & (y1 >= 0) & (x2 <= w) & (y2 <= h)
    idx_full, idx_in = np.flatnonzero(full), np.flatnonzero(in_frame)
    rec = {
        "id": v.id,
        "age": None if photo.age is None else int(photo.age),
        "gender": photo.gender,
        "face": photo.key,
        **_labels(photo),
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
        rec["boxes"] = _sample_boxes(times, idx_full, (x1, y1, x2, y2), opt.boxes_every_s)
    return rec


def _labels(photo: LabelledPhoto) -> dict:
    """The face's source and its mask and emotion labels, where it has them (a UTKFace-only
    clip's truth stays as it was)."""
    found = {"source": photo.source, "mask": photo.mask, "emotion": photo.emotion}
    return {k: v for k, v in found.items() if v is not None}


def _sample_boxes(times, idx_full, corners, every_s: float) -> list[list[float]]:
    """``[t, x1, y1, x2, y2]`` at the first frame of each ``every_s`` period, among the frames
    ``idx_full`` (where the face is wholly visible)."""
    boxes, next_t = [], 0.0
    for i in idx_full:
        if times[i] + 1e-9 >= next_t:
            boxes.append([round(float(times[i]), 3)] + [round(float(c[i]), 1) for c in corners])
            next_t = (math.floor(times[i] / every_s + 1e-9) + 1) * every_s
    return boxes
