"""The parts of a training run that ``jobs.train`` puts together, in the shape of torchvision's
reference scripts: data, network, optimiser, learning-rate schedule, ``train_one_epoch``,
``evaluate`` and the checkpoint.

A run folder receives ``config.yaml`` (the resolved config), ``split.json`` (which faces are
train/val), ``metrics.csv`` and ``metrics.json`` (one row per epoch) and ``final.pt``. Faces are
decoded and resized once into a uint8 cache; ``to_input`` turns a batch of them into the
network's input, through the augmentation of ``model.augment`` in training.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from model import face_masks
from model.augment import augment, random_erase
from model.face_sets import KINDS
from model.losses import MultiTaskLoss, expected_age
from model.metrics import age_metrics, class_metrics, gender_metrics
from model.network import MultiTaskNet, build_model
from model.train_config import ModelConfig, OptimConfig, TrainConfig, as_plain, model_config
from model.training_data import Faces, epoch_batches


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def learning_rate(step: int, total: int, warmup: int, base: float, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``base * min_ratio`` at
    ``total``."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped after every optimiser step, giving step ``s`` the rate
    ``learning_rate(s, ...)`` of ``cfg``'s schedule."""
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    for group in optimizer.param_groups:
        # LambdaLR multiplies this by the lambda: with 1 the lambda is the rate itself. A factor
        # times train.lr would round differently in the last bit from base * (step + 1) / warmup.
        group["initial_lr"] = 1.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate(step, total, warmup, cfg.lr, cfg.min_lr_ratio)
    )


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices and kernels only (not biases or norms)."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=tuple(cfg.betas),
    )


def to_input(
    batch_u8: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """uint8 NHWC -> the network's float NCHW input ``(x / 255 - mean) / std`` (``mean``, ``std``:
    [1, 3, 1, 1] on the batch's device); ``transform`` (the augmentation) sees ``x / 255``."""
    x = batch_u8.permute(0, 3, 1, 2).float().div_(255)
    if transform is not None:
        x = transform(x)
    return (x - mean) / std


def normalisation(cfg: TrainConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The data's mean and std as [1, 3, 1, 1] tensors for ``to_input``."""
    mean = torch.tensor(cfg.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.data.std).view(1, 3, 1, 1)
    return mean.to(device), std.to(device)


@torch.no_grad()
def predict(model, images: torch.Tensor, mean, std, batch: int = 512) -> dict[str, torch.Tensor]:
    """The network's outputs for uint8 NHWC ``images``, in eval mode, on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    outs: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch):
        x = to_input(images[i : i + batch], mean, std)
        for k, v in model(x.to(device)).items():
            outs.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in outs.items()}


def load_init(path: str | Path, cfg: ModelConfig) -> dict:
    """The weights of the checkpoint a fine-tuning starts from. Its network must be this
    config's, but for heads this config adds (a network taught to read more): those start
    fresh."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    trained = model_config(ckpt["config"]["model"])
    same_heads = all(cfg.heads.get(h) == n for h, n in trained.heads.items())
    if dataclasses.replace(trained, heads=cfg.heads) != cfg or not same_heads:
        raise ValueError(f"{path} was trained with another model section than this config")
    return ckpt["state_dict"]


def build_network(cfg: ModelConfig, init_state: dict | None, device, channels_last: bool):
    """The network on ``device``: a seeded random start, or the weights ``init_state`` (heads
    it lacks keep their random start)."""
    model = build_model(cfg)
    if init_state is not None:
        missing, unexpected = model.load_state_dict(init_state, strict=False)
        known = _heads_of(init_state)
        new_heads = [k for k in missing if k.startswith("heads.") and k.split(".")[1] not in known]
        if unexpected or len(new_heads) != len(missing):
            raise ValueError(f"the start weights do not fit the network: {missing + unexpected}")
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _heads_of(state: dict) -> set[str]:
    return {k.split(".")[1] for k in state if k.startswith("heads.")}


def train_one_epoch(
    model: MultiTaskNet,
    criterion: MultiTaskLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    faces: Faces,
    epoch: int,
    gen: torch.Generator,
    cfg: TrainConfig,
    log: Callable[[str], None],
) -> dict:
    """One pass over a shuffle of the training faces, augmented from ``gen``; returns the epoch's
    row of metrics (mean losses, the last rate)."""
    model.train()
    device = next(model.parameters()).device
    mean, std = normalisation(cfg, device)
    batches = epoch_batches(faces, cfg, gen)
    t0, sums, lr = time.time(), {}, 0.0
    for b, idx in enumerate(batches):
        lr = optimizer.param_groups[0]["lr"]
        targets = {k: v[idx].to(device) for k, v in faces.targets.items()}
        x = to_input(
            faces.images[idx].to(device, non_blocking=True),
            mean,
            std,
            functools.partial(_augmented, targets=targets, kind=faces.kind[idx], cfg=cfg, gen=gen),
        )
        x = random_erase(x, cfg.augment, gen)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, enabled=scaler.is_enabled()):
            outputs = model(x)
        loss, parts = criterion(outputs, targets)
        _step(optimizer, scaler, loss, model, cfg.train.grad_clip)
        scheduler.step()
        for k, v in {"loss": loss, **{f"loss_{k}": v for k, v in parts.items()}}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        if b % cfg.train.log_every == 0:
            log(
                f"epoch {epoch} step {b}/{len(batches)} loss {float(loss.detach()):.4f} "
                f"lr {lr:.2e} {time.time() - t0:.0f}s"
            )
    row = {"epoch": epoch, "steps": max(1, len(batches)), "lr": lr}
    row.update({k: v / max(1, len(batches)) for k, v in sums.items()})
    row["epoch_s"] = round(time.time() - t0, 1)
    return row


def _augmented(x: torch.Tensor, targets: dict, kind: np.ndarray, cfg: TrainConfig, gen):
    """The training augmentation of a batch, synthetic masks first (``augment.face_masks``) so
    they turn and degrade with the face; the drawn faces' mask targets (if the network has a
    mask head) are set to match."""
    share = cfg.augment.face_masks
    if share:  # a network without a mask head still learns to read age and gender over masks
        utkface = torch.from_numpy(kind == KINDS.index("utkface"))
        labels = targets.get("mask", torch.full((len(kind),), -1, device=x.device))
        x, labels = face_masks.draw_some(x, labels, utkface, share, gen)
        if "mask" in targets:
            targets["mask"] = labels
    return augment(x, cfg.augment, gen, cfg.data.crop)


def _step(opt, scaler, loss: torch.Tensor, model: torch.nn.Module, grad_clip: float) -> None:
    """One backward pass and optimiser step (gradients scaled under mixed precision)."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(grad_clip))
    scaler.step(opt)
    scaler.update()


def evaluate(model: torch.nn.Module, faces: Faces, cfg: TrainConfig) -> dict[str, float]:
    """Each head's validation figures on the validation faces labelled for it, as ``val_*``
    columns: age MAE and friends, gender accuracy, the other heads' accuracy and macro-F1."""
    if not len(faces.val):
        return {}
    mean, std = normalisation(cfg)
    out = predict(model, faces.images[torch.from_numpy(faces.val)], mean, std, 512)
    row: dict[str, float] = {}
    for head, logits in out.items():
        truth = faces.labels[head][faces.val]
        known = truth >= 0
        if not known.any():
            continue
        if head == "age":
            am = age_metrics(truth[known], expected_age(logits[known]).numpy())
            row.update({f"val_{k}": v for k, v in am.items() if k != "n"})
        elif head == "gender":
            pf = logits[known].softmax(1)[:, 1].numpy()
            row["val_gender_acc"] = gender_metrics(truth[known], pf)["gender_acc"]
        else:
            m = class_metrics(truth[known], logits[known].softmax(1).numpy())
            row[f"val_{head}_acc"], row[f"val_{head}_macro_f1"] = m["accuracy"], m["macro_f1"]
    return row


def write_history(run: Path, history: list[dict]) -> None:
    (run / "metrics.json").write_text(json.dumps(history, indent=1))
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


def write_run_config(run: Path, cfg: TrainConfig, data: str, manifest, init) -> None:
    """The resolved config in the run folder, with where the run's data and start came from."""
    plain = {**as_plain(cfg), "run": {"data": str(data), "manifest": manifest, "init": init}}
    (run / "config.yaml").write_text(yaml.safe_dump(plain, sort_keys=False))


def save_checkpoint(path: Path, model: torch.nn.Module, cfg: TrainConfig, faces: Faces, **run):
    """``final.pt``: the weights, the config and what export reads (input size, crop, mean, std,
    split, sizes); ``run`` adds the run's own facts (steps, seconds, metrics, data, init)."""
    mean, std = normalisation(cfg)
    ckpt = {
        "state_dict": model.state_dict(),
        "config": as_plain(cfg),
        "input_size": cfg.data.input_size,
        "crop": float(cfg.data.crop),
        "mean": mean.flatten().tolist(),
        "std": std.flatten().tolist(),
        "split": {
            "seed": cfg.data.split_seed,
            "val_fraction": float(cfg.data.val_fraction),
            "group_val_fraction": float(cfg.data.group_val_fraction),
        },
        "n_train": int(len(faces.train)),
        "n_val": int(len(faces.val)),
        **run,
    }
    torch.save(ckpt, path)
