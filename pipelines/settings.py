"""Analysis settings: typed sections read from config/analyze.yaml, the one home of the defaults.

A site file passed with ``--config`` is merged over the defaults (``common.config``: unknown
keys and values of the wrong type are errors); each section checks its ranges here, so a bad
site file stops the job with one line before any video is touched, not halfway through a night.
"""

from __future__ import annotations

import math
import os
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
    gate: bool  # decode only around activity (pipelines.gate); false: every frame
    gate_max_gop_s: float  # longest stretch one key frame may vouch for
    gate_change: float  # share of a key frame's thumbnail that must change to count as activity
    skip_nonref: bool  # drop non-reference frames when picking at most every other frame

    def __post_init__(self):
        _require(math.isfinite(self.fps) and self.fps > 0, "decode.fps must be positive")
        _require(self.threads >= 0, "decode.threads must be 0 (FFmpeg decides) or more")
        _require(
            math.isfinite(self.gate_max_gop_s) and self.gate_max_gop_s > 0,
            "decode.gate_max_gop_s must be a positive number of seconds",
        )
        _require(0 < self.gate_change < 1, "decode.gate_change must be between 0 and 1")


@dataclass(frozen=True)
class DetectorSettings:
    name: str
    model: str | None  # the detector's own ONNX file, for detectors that need one (yunet)
    min_face_px: int
    thresholds: tuple[float, float, float]  # MTCNN's three stage thresholds
    min_score: float
    max_side: int | None  # None: detect on full-size frames
    cadence: int  # in a stable scene with faces, detect on every cadence-th frame; 1: on all
    cadence_change: float  # share of a frame's thumbnail that must change to detect at once
    refresh: bool  # follow moving visitors' faces without a detection (pipelines.cadence)
    landmarks: str  # yunet: whose landmarks its faces get (onet: MTCNN's O-Net; yunet: its own)

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
        _require(self.cadence >= 1, "detector.cadence must be at least 1 (1: every frame)")
        _require(0 < self.cadence_change < 1, "detector.cadence_change must be between 0 and 1")
        _require(
            self.name.lower() != "mtcnn" or self.model is None,
            "detector mtcnn ships with the project: remove detector.model",
        )
        _require(
            self.landmarks in ("onet", "yunet"),
            "detector.landmarks must be onet (MTCNN's O-Net) or yunet (YuNet's own points)",
        )

    def detector_options(self) -> dict[str, Any]:
        """Keyword options for ``pipelines.faces.create_detector(self.name, ...)``: the common
        ones, plus MTCNN's stage thresholds or another detector's score floor and model file."""
        options: dict[str, Any] = {"min_face_px": self.min_face_px, "max_side": self.max_side}
        if self.name.lower() == "mtcnn":
            options["thresholds"] = self.thresholds
        else:
            options["min_score"] = self.min_score
            options["landmarks"] = self.landmarks
            if self.model is not None:
                options["model"] = self.model
        return options

    def version_args(self) -> dict[str, Any]:
        """Arguments of ``pipelines.faces.detector_version``: the name, the model file and the
        options that change a detector's results (YuNet's choice of landmarks)."""
        args: dict[str, Any] = {"name": self.name, "model": self.model}
        return args if self.name.lower() == "mtcnn" else {**args, "landmarks": self.landmarks}


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
class AttentionSettings:
    max_yaw_deg: float  # a frame faces the camera within these head-pose limits, either way
    max_pitch_deg: float
    min_watch_s: float  # a visitor facing the camera this long in all is a watcher
    camera_hfov_deg: float  # the cameras' horizontal field of view, for the pose's geometry

    def __post_init__(self):
        _require(0 < self.max_yaw_deg <= 90, "attention.max_yaw_deg must be above 0, at most 90")
        _require(
            0 < self.max_pitch_deg <= 90, "attention.max_pitch_deg must be above 0, at most 90"
        )
        _require(
            math.isfinite(self.min_watch_s) and self.min_watch_s > 0,
            "attention.min_watch_s must be a positive number of seconds",
        )
        _require(
            10 <= self.camera_hfov_deg <= 170,
            "attention.camera_hfov_deg must be between 10 and 170 degrees",
        )


@dataclass(frozen=True)
class IdentitySettings:
    stitch: bool  # within a video: merge track fragments whose faces look alike
    enabled: bool  # across videos: a per-day pseudonymous person_id (opt-in)
    model: str
    sample_every_s: float
    min_frontalness: float
    min_face_px: float
    same_person: float
    same_person_day: float
    stitch_window_s: float

    def __post_init__(self):
        _require(self.sample_every_s > 0, "identity.sample_every_s must be above 0")
        _require(0 <= self.min_frontalness <= 1, "identity.min_frontalness must be between 0 and 1")
        _require(self.min_face_px >= 0, "identity.min_face_px must not be negative")
        for name in ("same_person", "same_person_day"):
            value = getattr(self, name)
            _require(-1 < value < 1, f"identity.{name} must be between -1 and 1")
        _require(self.stitch_window_s >= 0, "identity.stitch_window_s must not be negative")

    @property
    def embeds(self) -> bool:
        return self.stitch or self.enabled


@dataclass(frozen=True)
class OutputSettings:
    detections: bool


# What one DirectRunner worker needs (`make bench`, 2-core machine): decoding and detection run in
# threads beside inference, so a worker keeps about two cores busy, and its peak
# memory was 1.25 GiB. A second worker on two cores was slower (3.24 against 4.58 video-seconds
# per second) and used 2.5 GB against 1.0.
CORES_PER_WORKER = 2
MEMORY_PER_WORKER = int(1.3 * 2**30)


def auto_workers(cores: int, memory_bytes: int | None) -> int:
    """Workers for a machine with ``cores`` usable cores and ``memory_bytes`` of memory free
    (None: unknown): one per two cores, no more than the memory holds, at least one."""
    workers = cores // CORES_PER_WORKER
    if memory_bytes is not None:
        workers = min(workers, memory_bytes // MEMORY_PER_WORKER)
    return max(1, workers)


def machine_capacity() -> tuple[int, int | None]:
    """This process's usable cores (its CPU affinity, which taskset and cpusets narrow) and the
    memory free for it: the kernel's MemAvailable, lowered to the room left under a cgroup v2
    memory limit (a container, a systemd MemoryMax=). None when neither can be read."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    free = [_meminfo_available(), _cgroup_room()]
    known = [b for b in free if b is not None]
    return cores or 1, min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), or None: no limit, or no
    cgroup v2 (then MemAvailable alone decides)."""
    try:
        entry = Path("/proc/self/cgroup").read_text().splitlines()
        group = next(line[3:] for line in entry if line.startswith("0::"))
        folder = Path("/sys/fs/cgroup") / group.lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((folder / "memory.current").read_text()))
    except (OSError, ValueError, StopIteration):
        return None


@dataclass(frozen=True)
class RunnerSettings:
    name: str
    workers: int | str  # a number, or "auto": chosen from this machine by worker_count()

    def __post_init__(self):
        if isinstance(self.workers, str):
            _require(
                self.workers == "auto",
                f"runner.workers must be a whole number or auto, not {self.workers!r}",
            )
        else:
            _require(self.workers >= 1, "runner.workers must be at least 1")

    def worker_count(self) -> int:
        """The number of workers to start: the setting, or for auto this machine's share."""
        if isinstance(self.workers, int):
            return self.workers
        return auto_workers(*machine_capacity())


@dataclass(frozen=True)
class Settings:
    input: InputSettings
    decode: DecodeSettings
    detector: DetectorSettings
    model: ModelSettings
    tracker: TrackerSettings
    visitors: VisitorSettings
    attention: AttentionSettings
    identity: IdentitySettings
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
