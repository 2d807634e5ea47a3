"""The training config: typed sections read from config/train.yaml, the one home of the defaults.

A file given to ``jobs.train --config`` is laid over the defaults; the recipe's overlays, the
``finetune`` section (``--init``) and ``variants.NAME`` (``--variant``), are laid over that, all
with ``common.config.merge``: a key the defaults lack is an error naming it, wherever it is
written. Every overlay is checked when the config is read, the ones this run does not use
included, so a typo in any of them stops the job before data are loaded. Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import config
from common.config import ConfigError, require
from model.face_sets import KINDS as FACE_SETS

DEFAULTS_FILE = Path(__file__).resolve().parents[1] / "config" / "train.yaml"
BACKBONES = ("resnet18", "resnet34", "resnet50")
AGE_LOSSES = ("ce", "gaussian", "mean_variance")
# Sections of the YAML file that are overlays, not settings of a run.
OVERLAYS = ("finetune", "variants")


@dataclass(frozen=True)
class DataConfig:
    input_size: int
    crop: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    split_seed: int
    val_fraction: float
    group_val_fraction: float
    cache_dir: str | None

    def __post_init__(self):
        require(self.input_size >= 16, "data.input_size must be at least 16 pixels")
        require(0 < self.crop <= 1, "data.crop must be in (0, 1]")
        require(len(self.mean) == 3 and len(self.std) == 3, "data.mean and data.std: 3 numbers")
        require(all(s > 0 for s in self.std), "data.std must be positive")
        require(0 <= self.val_fraction < 1, "data.val_fraction must be in [0, 1)")
        require(0 <= self.group_val_fraction < 1, "data.group_val_fraction must be in [0, 1)")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str
    width: float
    small_input: bool
    dropout: float
    heads: dict[str, int]

    def __post_init__(self):
        require(
            self.backbone in BACKBONES,
            f"unknown backbone '{self.backbone}', choose one of {', '.join(BACKBONES)}",
        )
        require(self.width > 0, "model.width must be positive")
        require(0 <= self.dropout < 1, "model.dropout must be in [0, 1)")
        require("age" in self.heads, "model.heads must have an age head (validation reads it)")
        require(all(n >= 1 for n in self.heads.values()), "model.heads: at least 1 class each")


@dataclass(frozen=True)
class AgeLossConfig:
    type: str
    sigma: float
    l1_weight: float
    mean_weight: float
    variance_weight: float

    def __post_init__(self):
        require(
            self.type in AGE_LOSSES,
            f"unknown age loss '{self.type}' ({', '.join(AGE_LOSSES)})",
        )
        require(self.sigma > 0, "loss.age.sigma must be positive")
        weights = (self.l1_weight, self.mean_weight, self.variance_weight)
        require(min(weights) >= 0, "loss.age weights must not be negative")


@dataclass(frozen=True)
class LossConfig:
    weights: dict[str, float]
    age: AgeLossConfig
    label_smoothing: float
    class_weight_power: float
    focal_gamma: float

    def __post_init__(self):
        require(0 <= self.label_smoothing < 1, "loss.label_smoothing must be in [0, 1)")
        require(0 <= self.class_weight_power <= 1, "loss.class_weight_power must be in [0, 1]")
        require(0 <= self.focal_gamma <= 5, "loss.focal_gamma must be in [0, 5]")


@dataclass(frozen=True)
class OptimConfig:
    """The ``train:`` section: optimiser (AdamW), schedule (warm-up, cosine) and the loop."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    warmup_epochs: float
    min_lr_ratio: float
    grad_clip: float
    amp: bool | str
    device: str
    channels_last: bool
    threads: int
    log_every: int

    def __post_init__(self):
        require(self.epochs >= 1 and self.batch_size >= 1, "train.epochs, batch_size: at least 1")
        require(math.isfinite(self.lr) and self.lr > 0, "train.lr must be positive")
        require(self.weight_decay >= 0, "train.weight_decay must not be negative")
        require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "train.betas: two numbers in [0, 1)",
        )
        require(self.warmup_epochs >= 0, "train.warmup_epochs must not be negative")
        require(0 <= self.min_lr_ratio <= 1, "train.min_lr_ratio must be in [0, 1]")
        require(self.grad_clip >= 0, "train.grad_clip must not be negative (0: no clipping)")
        require(self.amp in (True, False, "auto"), "train.amp must be true, false or auto")
        require(self.threads >= 0, "train.threads must be 0 (all cores) or more")
        require(self.log_every >= 1, "train.log_every must be at least 1")


@dataclass(frozen=True)
class SamplingConfig:
    balanced: bool
    bin_years: int
    power: float
    repeats: dict[str, float]

    def __post_init__(self):
        require(self.bin_years >= 1, "sampling.bin_years must be at least 1")
        require(
            set(self.repeats) <= set(FACE_SETS) and all(r > 0 for r in self.repeats.values()),
            f"sampling.repeats: a positive number per face set ({', '.join(FACE_SETS)})",
        )


def _probability(value: float, name: str) -> None:
    require(0 <= value <= 1, f"augment.{name} must be in [0, 1]")


@dataclass(frozen=True)
class AugmentConfig:
    hflip: float
    rotate_deg: float
    scale: float
    translate: float
    brightness: float
    contrast: float
    saturation: float
    grayscale: float
    erase_prob: float
    erase_area: tuple[float, float]
    downscale_prob: float
    downscale_px: tuple[float, float]
    white_balance: float
    gamma: float
    noise: float
    eyeglasses: float
    face_masks: float

    def __post_init__(self):
        names = ("hflip", "grayscale", "erase_prob", "downscale_prob", "eyeglasses", "face_masks")
        for name in names:
            _probability(getattr(self, name), name)
        lo, hi = self.erase_area
        require(0 < lo <= hi <= 1, "augment.erase_area: [low, high] shares in (0, 1]")
        lo, hi = self.downscale_px
        require(0 <= lo <= hi, "augment.downscale_px: [low, high] pixels")
        for name in ("rotate_deg", "scale", "translate", "brightness", "contrast", "saturation"):
            require(getattr(self, name) >= 0, f"augment.{name} must not be negative")
        for name in ("white_balance", "gamma", "noise"):
            require(getattr(self, name) >= 0, f"augment.{name} must not be negative")


@dataclass(frozen=True)
class TrainConfig:
    seed: int
    data: DataConfig
    model: ModelConfig
    loss: LossConfig
    train: OptimConfig
    sampling: SamplingConfig
    augment: AugmentConfig

    def __post_init__(self):
        require(0 <= self.seed < 2**32, "seed must be between 0 and 2**32 - 1")
        require(
            set(self.loss.weights) == set(self.model.heads),
            f"loss.weights must give each head of model.heads a weight "
            f"(heads: {', '.join(self.model.heads)}; weights: {', '.join(self.loss.weights)})",
        )
        require(
            not self.augment.face_masks or self.data.crop == 1.0,
            "augment.face_masks draws on whole UTKFace chips: it needs data.crop 1.0",
        )

    def replace(self, section: str, **values: Any) -> TrainConfig:
        """A copy with some keys of one section changed (command-line overrides)."""
        return config.replace(self, section, **values)


def load_config(
    path: str | Path | None = None, variant: str | None = None, finetune: bool = False
) -> TrainConfig:
    """The config of a run: the defaults, the file at ``path`` laid over them, then, for a
    fine-tuning, the ``finetune`` section, and last ``variants.<variant>``."""
    raw = config.read_yaml(DEFAULTS_FILE)
    if path is not None:
        raw = config.merge(raw, config.read_yaml(path), TrainConfig)
    overlays = {name: raw.pop(name) for name in OVERLAYS}
    variants = overlays["variants"]
    require(isinstance(variants, dict), "variants must be a mapping of recipe names")
    named = {f"variants.{name}.": overlay for name, overlay in variants.items()}
    for where, overlay in {"finetune.": overlays["finetune"], **named}.items():
        _with_overlay(raw, overlay, where)  # a typo in any overlay is an error now
    if variant is not None and variant not in variants:
        known = ", ".join(variants) or "none"
        raise ConfigError(f"no variant '{variant}' in the config (it has: {known})")
    if finetune:
        raw = _with_overlay(raw, overlays["finetune"], "finetune.")
    if variant is not None:  # last: a recipe that is a fine-tuning sets its own schedule
        raw = _with_overlay(raw, variants[variant], f"variants.{variant}.")
    return config.build(TrainConfig, raw)


def _with_overlay(raw: dict, overlay: Any, where: str) -> dict:
    """``raw`` with ``overlay`` laid over it, checked by building the config it gives."""
    if not isinstance(overlay, dict):
        raise ConfigError(f"setting '{where.rstrip('.')}' must be a mapping of sections")
    merged = config.merge(raw, overlay, TrainConfig, where)
    try:
        config.build(TrainConfig, merged)
    except ConfigError as e:
        raise ConfigError(f"with {where.rstrip('.')}: {e}") from None
    return merged


def as_plain(cfg: TrainConfig) -> dict:
    """The config as plain YAML/pickle values (lists, not tuples): what a run folder and its
    checkpoint store, and what ``model_config`` reads back."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(cfg))


# Options of earlier versions, removed unshipped: a checkpoint that stored them at these values
# built the network this version builds; any other value names a network it cannot rebuild.
RETIRED_MODEL_OPTIONS = {"input_norm": "fixed", "pretrained": False}


def model_config(section: dict) -> ModelConfig:
    """The ``model`` section a checkpoint stored, as a ``ModelConfig``."""
    section = dict(section)
    for key, only in RETIRED_MODEL_OPTIONS.items():
        if key in section and section.pop(key) != only:
            raise ConfigError(f"the network was trained with model.{key} other than {only!r}")
    return config.build(ModelConfig, section, "model")
