"""Analysis settings: typed sections read from config/analyze.yaml, the one home of the defaults.

A site file passed with ``--config`` is merged over the defaults (``common.config``: unknown
keys and values of the wrong type are errors); each section checks its ranges here, so a bad
site file stops the job with one line before any video is touched, not halfway through a night.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common import config
from common.config import require as _require

DEFAULTS_FILE = Path(__file__).resolve().parents[1] / "config" / "analyze.yaml"


def _zone_exists(name: str) -> bool:
    if name == "local":
        return True
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


TIME_GROUPS = ("Y", "m", "d", "H", "M", "S")  # the named groups a start-time pattern must have


def _regex_error(pattern: str) -> str | None:
    try:
        groups = re.compile(pattern).groupindex
    except re.error as e:
        return str(e)
    missing = [g for g in TIME_GROUPS if g not in groups]
    if missing:  # it would never give a time, silently leaving every video to metadata or mtime
        return f"it lacks the named groups {', '.join(f'(?P<{g}>...)' for g in missing)}"
    return None


@dataclass(frozen=True)
class InputSettings:
    extensions: tuple[str, ...]
    start_time_pattern: str
    timezone: str

    def __post_init__(self):
        _require(len(self.extensions) > 0, "input.extensions: list at least one file extension")
        error = _regex_error(self.start_time_pattern)
        _require(error is None, f"input.start_time_pattern is not a usable regex: {error}")
        _require(
            _zone_exists(self.timezone),
            f"input.timezone: unknown time zone {self.timezone!r} (an IANA name such as "
            "Europe/Berlin, or local)",
        )


@dataclass(frozen=True)
class DecodeSettings:
    fps: float
    threads: int

    def __post_init__(self):
        _require(math.isfinite(self.fps) and self.fps > 0, "decode.fps must be positive")
        _require(self.threads >= 0, "decode.threads must be 0 (FFmpeg decides) or more")


@dataclass(frozen=True)
class DetectorSettings:
    name: str
    model: str | None  # the detector's own ONNX file, for detectors that need one (yunet)
    min_face_px: int
    thresholds: tuple[float, float, float]  # MTCNN's three stage thresholds
    min_score: float
    max_side: int | None  # None: detect on full-size frames

    def __post_init__(self):
        _require(self.min_face_px >= 1, "detector.min_face_px must be at least 1")
        _require(
            len(self.thresholds) == 3 and all(0 <= t <= 1 for t in self.thresholds),
            "detector.thresholds: three numbers between 0 and 1 (P-Net, R-Net, O-Net)",
        )
        _require(0 <= self.min_score <= 1, "detector.min_score must be between 0 and 1")
        _require(
            self.max_side is None or self.max_side >= 32,
            "detector.max_side must be at least 32 pixels (or null: full-size frames)",
        )
        _require(
            self.name.lower() != "mtcnn" or self.model is None,
            "detector mtcnn ships with the project: remove detector.model",
        )

    def detector_options(self) -> dict[str, Any]:
        """Keyword options for ``pipelines.faces.create_detector(self.name, ...)``: the common
        ones, plus MTCNN's stage thresholds or another detector's score floor and model file."""
        options: dict[str, Any] = {"min_face_px": self.min_face_px, "max_side": self.max_side}
        if self.name.lower() == "mtcnn":
            options["thresholds"] = self.thresholds
        else:
            options["min_score"] = self.min_score
            if self.model is not None:
                options["model"] = self.model
        return options


@dataclass(frozen=True)
class ModelSettings:
    path: str
    batch_min: int
    batch_max: int
    threads: int

    def __post_init__(self):
        _require(
            1 <= self.batch_min <= self.batch_max,
            "model.batch_min and model.batch_max: 1 <= batch_min <= batch_max",
        )
        _require(self.threads >= 0, "model.threads must be 0 (ONNX Runtime decides) or more")


@dataclass(frozen=True)
class TrackerSettings:
    min_iou: float
    max_center_shift: float
    max_gap_s: float
    max_size_ratio: float

    def __post_init__(self):
        _require(0 <= self.min_iou <= 1, "tracker.min_iou must be between 0 and 1")
        _require(self.max_center_shift >= 0, "tracker.max_center_shift must not be negative")
        _require(self.max_gap_s >= 0, "tracker.max_gap_s must not be negative")
        _require(self.max_size_ratio >= 1, "tracker.max_size_ratio must be at least 1")


@dataclass(frozen=True)
class VisitorSettings:
    min_frames: int
    min_face_px: float
    age_bands: tuple[int, ...]

    def __post_init__(self):
        _require(self.min_frames >= 1, "visitors.min_frames must be at least 1")
        _require(self.min_face_px >= 0, "visitors.min_face_px must not be negative")
        bands = self.age_bands
        _require(
            len(bands) > 0
            and bands[0] > 0
            and all(a < b for a, b in zip(bands, bands[1:], strict=False))
            and bands[-1] <= 100,
            "visitors.age_bands: increasing band edges between 1 and 100, e.g. [18, 35, 55]",
        )


@dataclass(frozen=True)
class OutputSettings:
    detections: bool


@dataclass(frozen=True)
class RunnerSettings:
    name: str
    workers: int

    def __post_init__(self):
        _require(self.workers >= 1, "runner.workers must be at least 1")


@dataclass(frozen=True)
class Settings:
    input: InputSettings
    decode: DecodeSettings
    detector: DetectorSettings
    model: ModelSettings
    tracker: TrackerSettings
    visitors: VisitorSettings
    output: OutputSettings
    runner: RunnerSettings

    def replace(self, section: str, **values: Any) -> Settings:
        """A copy with some keys of one section changed (used for command-line overrides)."""
        return config.replace(self, section, **values)


@dataclass(frozen=True)
class RunOptions:
    """What one run of the job was asked to do, beyond the settings."""

    output: str
    run_id: str
    model_version: str
    detector_version: str
    force: bool = False
    reprocess_model_changes: bool = False
    dates: tuple[date, ...] | None = None  # only videos starting on these dates
    since: date | None = None  # only videos starting on or after this date
    progress: bool = False  # progress bar per video (terminal)


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults from config/analyze.yaml, with the site file at ``path`` merged over them."""
    return config.load(Settings, DEFAULTS_FILE, *([path] if path is not None else []))
