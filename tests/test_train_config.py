"""The typed training config (defaults, overlays, type and range errors) and the learning-rate
schedule that the config gives."""

import dataclasses
import math

import pytest
import yaml

from common.config import ConfigError
from model.train_config import as_plain, load_config, model_config

torch = pytest.importorskip("torch", reason="needs the train extra (make install-train)")

# Imported after the skip: these modules import torch.
from model.training import make_optimizer, make_scheduler  # noqa: E402


def _file(tmp_path, data: dict):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_variant_and_finetune_give_the_shipped_recipes():
    base = load_config()
    assert (base.seed, base.data.input_size, base.data.mean) == (0, 80, (0.5, 0.5, 0.5))
    assert (base.model.backbone, base.model.width, base.model.heads) == (
        "resnet18",
        0.5,
        {"age": 101, "gender": 2},
    )
    assert (base.train.epochs, base.train.lr, base.augment.eyeglasses) == (60, 0.002, 0.0)
    assert load_config(variant="glasses").augment.eyeglasses == 0.3
    tuned = load_config(finetune=True)
    assert (tuned.train.epochs, tuned.train.lr, tuned.train.warmup_epochs) == (12, 0.0005, 0)
    assert tuned.augment.eyeglasses == 0.3 and tuned.train.batch_size == 128  # the rest kept
    assert tuned.model == base.model and tuned.augment.hflip == base.augment.hflip


def test_a_user_file_is_laid_over_the_defaults_key_by_key(tmp_path):
    path = _file(tmp_path, {"train": {"epochs": 3}, "loss": {"age": {"sigma": 1.0}}, "seed": 7})
    cfg = load_config(path)
    assert (cfg.seed, cfg.train.epochs, cfg.train.batch_size) == (7, 3, 128)
    assert (cfg.loss.age.sigma, cfg.loss.age.type, cfg.loss.age.l1_weight) == (
        1.0,
        "gaussian",
        0.05,
    )
    # the user's overlays replace the file's: its finetune section is what --init applies
    path = _file(tmp_path, {"finetune": {"train": {"epochs": 2}}})
    tuned = load_config(path, finetune=True)
    assert (tuned.train.epochs, tuned.train.lr, tuned.augment.eyeglasses) == (2, 0.002, 0.0)


@pytest.mark.parametrize(
    "data,named",
    [
        ({"finetune": {"augment": {"eyeglass": 0.3}}}, "finetune.augment.eyeglass"),
        ({"finetune": {"nope": {"x": 1}}}, "finetune.nope"),
        ({"variants": {"glasses": {"augment": {"eyeglass": 0.3}}}}, "variants.glasses.augment."),
        ({"variants": {"g2": {"model": {"input_norm": "fixed"}}}}, "variants.g2.model.input_norm"),
        ({"train": {"time_budget_min": 5}}, "train.time_budget_min"),
        ({"model": {"pretrained": False}}, "model.pretrained"),
    ],
)
def test_an_unknown_key_is_an_error_naming_it_even_in_an_overlay_not_used(tmp_path, data, named):
    with pytest.raises(ConfigError, match=f"unknown setting '{named}"):
        load_config(_file(tmp_path, data))  # neither --init nor --variant: checked anyway


@pytest.mark.parametrize(
    "data,message",
    [
        ({"model": {"width": "wide"}}, "setting 'model.width' must be a number, not 'wide'"),
        ({"train": {"epochs": 2.5}}, "setting 'train.epochs' must be a whole number"),
        ({"augment": {"hflip": True}}, "setting 'augment.hflip' must be a number"),
        ({"data": {"mean": 0.5}}, "setting 'data.mean' must be a list"),
        ({"finetune": {"train": {"lr": "low"}}}, "with finetune: setting 'train.lr' must be a"),
        ({"model": {"backbone": "vgg11"}}, "unknown backbone 'vgg11'"),
        ({"augment": {"hflip": 1.5}}, r"augment.hflip must be in \[0, 1\]"),
        ({"variants": {"x": {"train": {"lr": -1}}}}, "with variants.x: train.lr must be positive"),
        ({"model": {"heads": {"age": 101, "gender": 2, "mask": 3}}}, "loss.weights must give"),
        ({"seed": 2**32}, "seed must be between 0 and 2"),
    ],
)
def test_a_wrong_type_or_range_is_an_error_naming_the_setting(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_file(tmp_path, data))


def test_an_unknown_variant_names_the_known_ones():
    with pytest.raises(
        ConfigError,
        match=r"no variant 'dlib' in the config \(it has: glasses, multitask, multitask_masks, "
        r"multitask_weighted\)",
    ):
        load_config(variant="dlib")


def test_a_variant_can_build_on_another_through_yaml_anchors():
    """multitask_masks repeats the multitask recipe by YAML merge keys, changing the schedule
    and adding one augmentation."""
    base, masks = load_config(variant="multitask"), load_config(variant="multitask_masks")
    assert masks.model == base.model and masks.sampling == base.sampling
    assert masks.loss == base.loss and base.augment.face_masks == 0
    assert masks.augment == dataclasses.replace(base.augment, face_masks=0.4)
    assert (masks.train.epochs, masks.train.lr, masks.train.warmup_epochs) == (12, 0.0003, 0)


def test_synthetic_masks_need_the_whole_chip(tmp_path):
    path = _file(tmp_path, {"augment": {"face_masks": 0.4}, "data": {"crop": 0.8}})
    with pytest.raises(ConfigError, match="face_masks .* needs data.crop 1.0"):
        load_config(path)


def test_a_checkpoint_model_section_reads_back_retired_options_only_at_their_only_value():
    cfg = load_config()
    assert model_config(as_plain(cfg)["model"]) == cfg.model
    old = {**as_plain(cfg)["model"], "input_norm": "fixed", "pretrained": False}
    assert model_config(old) == cfg.model  # written before those options were removed
    with pytest.raises(ConfigError, match="input_norm other than 'fixed'"):
        model_config({**old, "input_norm": "per_image"})


def _lr_at_before(step: int, total: int, warmup: int, base: float, min_ratio: float) -> float:
    """The schedule as the training loop computed it before it used a library scheduler."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


@pytest.mark.parametrize(
    "recipe,steps_per_epoch", [("base", 145), ("finetune", 145), ("half-warmup", 7)]
)
def test_the_scheduler_gives_every_step_exactly_the_rate_of_before(recipe, steps_per_epoch):
    cfg = load_config(finetune=recipe == "finetune").train
    if recipe == "half-warmup":
        cfg = load_config().replace("train", warmup_epochs=0.5, epochs=3).train
    optimizer = make_optimizer(torch.nn.Linear(2, 2), cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    total, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    got = []
    for _ in range(total):
        got.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    want = [_lr_at_before(s, total, warmup, cfg.lr, cfg.min_lr_ratio) for s in range(total)]
    assert got == [[w, w] for w in want]  # exactly, both parameter groups
    assert got[0][0] == pytest.approx(cfg.lr / warmup if warmup else cfg.lr)
    assert got[warmup][0] == pytest.approx(cfg.lr)  # the cosine starts at the full rate
    assert cfg.lr * cfg.min_lr_ratio < got[-1][0] < 2 * cfg.lr * cfg.min_lr_ratio
