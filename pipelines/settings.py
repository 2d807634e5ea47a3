"""Analysis settings: typed sections read from config/analyze.yaml, the one home of the defaults.

A site file passed with ``--config`` is merged over the defaults key by key; unknown keys are an
error so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULTS_FILE = Path(__file__).resolve().parents[1] / "config" / "analyze.yaml"


class SettingsError(ValueError):
    """A configuration a user wrote is unusable; the message says what to fix."""


@dataclass(frozen=True)
class InputSettings:
    extensions: tuple[str, ...]
    start_time_pattern: str
    timezone: str


@dataclass(frozen=True)
class DecodeSettings:
    fps: float
    threads: int


@dataclass(frozen=True)
class DetectorSettings:
    name: str
    model: str | None  # the detector's own ONNX file, for detectors that need one (yunet)
    min_face_px: int
    thresholds: tuple[float, float, float]  # MTCNN's three stage thresholds
    min_score: float
    max_side: int

    def detector_options(self) -> dict[str, Any]:
        """Keyword options for ``pipelines.faces.create_detector(self.name, ...)``: the common
        ones, plus MTCNN's stage thresholds or another detector's score floor and model file."""
        options: dict[str, Any] = {"min_face_px": self.min_face_px, "max_side": self.max_side}
        if self.name.lower() == "mtcnn":
            if self.model is not None:
                raise SettingsError("detector mtcnn ships with the project: remove detector.model")
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


@dataclass(frozen=True)
class TrackerSettings:
    min_iou: float
    max_center_shift: float
    max_gap_s: float
    max_size_ratio: float


@dataclass(frozen=True)
class VisitorSettings:
    min_frames: int
    min_face_px: float
    age_bands: tuple[int, ...]


@dataclass(frozen=True)
class OutputSettings:
    detections: bool


@dataclass(frozen=True)
class RunnerSettings:
    name: str
    workers: int


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
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **values)}
        )


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise SettingsError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SettingsError(f"config {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"config {path} must be a mapping of sections")
    return data


def _merge(base: dict, override: dict, where: str) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if key not in base:
            raise SettingsError(f"unknown setting '{where}{key}' (known: {', '.join(base)})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise SettingsError(f"setting '{where}{key}' must be a mapping")
            merged[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            merged[key] = value
    return merged


def _build(cls: type, values: dict, where: str):
    kwargs = {}
    for field in dataclasses.fields(cls):
        value = values[field.name]
        if isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise SettingsError(f"settings '{where}': {e}") from None


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults from config/analyze.yaml, with the site file at ``path`` merged over them."""
    data = _read_yaml(DEFAULTS_FILE)
    if path is not None:
        data = _merge(data, _read_yaml(Path(path)), "")
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    sections = {}
    for name in types:
        cls = globals()[types[name]] if isinstance(types[name], str) else types[name]
        sections[name] = _build(cls, data[name], name)
    return Settings(**sections)
