"""Training loop for the multi-task face network.

Everything comes from the YAML config (see ``config/train.yaml``). A run folder receives
``config.yaml`` (the resolved config), ``split.json`` (which faces are train/val), ``metrics.csv``
and ``metrics.json`` (one row per epoch), ``train.log`` lines on stdout, and ``final.pt``.

Faces are decoded and resized once into a uint8 cache; augmentation runs on whole batches of
tensors (flip, affine rotation/scale/shift, colour jitter, random erasing).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from common.messages import yaml_problem
from model import datasets, eyeglasses
from model.losses import MultiTaskLoss, expected_age
from model.metrics import age_metrics, gender_metrics
from model.network import build_model, count_flops, count_params, load_pretrained, model_options


def load_config(path: str | Path) -> dict:
    with open(path) as f:
        try:
            cfg = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML: {yaml_problem(e)}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    return cfg


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, total: int, warmup: int, base: float, min_ratio: float, t=None) -> float:
    """Linear warm-up then cosine decay to ``base * min_ratio``; ``t`` overrides the post-warm-up
    progress in [0, 1] (used by the wall-clock budget)."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if t is None:
        t = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    """``n`` uniform draws from the CPU generator (one random stream on every device)."""
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)


def augment(x: torch.Tensor, cfg: dict, gen: torch.Generator, crop: float = 1.0) -> torch.Tensor:
    """Batch augmentation of float images in [0, 1], NCHW, on ``x``'s device; ``crop`` is the
    data's centred crop (where the eyes are, for the eyeglasses)."""
    n = x.shape[0]

    def u(lo, hi):
        return _uniform(n, lo, hi, gen, x.device)

    p_glasses = float(cfg.get("eyeglasses", 0))
    if p_glasses:  # first, so the glasses turn and scale with the face
        x = eyeglasses.draw(
            x, gen, eyeglasses.eyes_in_crop(crop), torch.rand(n, generator=gen) < p_glasses
        )

    if cfg.get("hflip", 0.5):
        flip = u(0, 1) < float(cfg.get("hflip", 0.5))
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    rot, scale, shift = (
        float(cfg.get("rotate_deg", 0)),
        float(cfg.get("scale", 0)),
        float(cfg.get("translate", 0)),
    )
    if rot or scale or shift:
        a = u(-rot, rot) * math.pi / 180
        s = u(1 - scale, 1 + scale)
        tx, ty = u(-shift, shift) * 2, u(-shift, shift) * 2
        theta = torch.stack(
            [
                torch.stack([torch.cos(a) / s, -torch.sin(a) / s, tx], 1),
                torch.stack([torch.sin(a) / s, torch.cos(a) / s, ty], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    b, c, sat = (
        float(cfg.get("brightness", 0)),
        float(cfg.get("contrast", 0)),
        float(cfg.get("saturation", 0)),
    )
    if b:
        x = x * u(1 - b, 1 + b)[:, None, None, None]
    if c:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * u(1 - c, 1 + c)[:, None, None, None] + mean
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    if sat:
        x = gray + (x - gray) * u(1 - sat, 1 + sat)[:, None, None, None]
    p_gray = float(cfg.get("grayscale", 0))
    if p_gray:
        g = u(0, 1) < p_gray
        x = torch.where(g[:, None, None, None], gray.expand_as(x), x)
    return degrade(x.clamp(0, 1), cfg, gen)


def degrade(x: torch.Tensor, cfg: dict, gen: torch.Generator) -> torch.Tensor:
    """Camera-like degradation of float images in [0, 1], NCHW.

    Kiosk video differs from web photos less in pose than in capture: faces a few dozen pixels
    wide and upscaled, soft focus, sensor noise, grey-ish exposure and white balance. Each image
    independently gets, with its own probability: a down- and up-scale through
    ``downscale_px`` pixels (area down, bilinear up), a per-channel gain (white balance), a
    gamma curve and Gaussian noise.
    """
    n = x.shape[0]

    def u(lo, hi):
        return _uniform(n, lo, hi, gen, x.device)

    p_down = float(cfg.get("downscale_prob", 0))
    if p_down:
        lo, hi = cfg["downscale_px"]
        chosen = u(0, 1) < p_down
        # Bucket the sizes to multiples of 4 px: one interpolate call per bucket, not per image.
        sizes = ((u(lo, hi) / 4).round().long() * 4).clamp(min=2)
        out = x.clone()
        for side in sizes[chosen].unique().tolist():
            pick = chosen & (sizes == side)
            small = F.interpolate(x[pick], size=(side, side), mode="area")
            out[pick] = F.interpolate(small, size=x.shape[2:], mode="bilinear", align_corners=False)
        x = out
    wb = float(cfg.get("white_balance", 0))
    if wb:
        gains = _uniform(n * 3, 1 - wb, 1 + wb, gen, x.device).view(n, 3, 1, 1)
        x = x * gains
    gamma = float(cfg.get("gamma", 0))
    if gamma:
        x = x.clamp(0, 1) ** torch.exp(u(-gamma, gamma))[:, None, None, None]
    noise = float(cfg.get("noise", 0))
    if noise:
        sigma = u(0, noise)[:, None, None, None]
        x = x + torch.randn(x.shape, generator=gen).to(x.device) * sigma
    return x.clamp(0, 1)


def random_erase(x: torch.Tensor, cfg: dict, gen: torch.Generator) -> torch.Tensor:
    """Random erasing on normalised images: one box per chosen image filled with noise."""
    p = float(cfg.get("erase_prob", 0))
    if not p:
        return x
    n, _, h, w = x.shape
    lo, hi = (float(v) for v in cfg["erase_area"])
    area = torch.rand(n, generator=gen) * (hi - lo) + lo
    logr = torch.rand(n, generator=gen) * (2 * math.log(3.3)) - math.log(3.3)
    ratio = torch.exp(logr)
    eh = (torch.sqrt(area * ratio) * h).clamp(1, h).long()
    ew = (torch.sqrt(area / ratio) * w).clamp(1, w).long()
    y0 = (torch.rand(n, generator=gen) * (h - eh + 1).float()).long()
    x0 = (torch.rand(n, generator=gen) * (w - ew + 1).float()).long()
    ys = torch.arange(h)[None, :]
    xs = torch.arange(w)[None, :]
    my = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])
    mx = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])
    chosen = torch.rand(n, generator=gen) < p
    mask = (my[:, :, None] & mx[:, None, :] & chosen[:, None, None])[:, None].to(x.device)
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    return torch.where(mask, noise, x)


def sample_weights(ages: np.ndarray, bin_years: int, power: float) -> np.ndarray:
    """Per-face weights ``count(age bin) ** -power`` for class-balanced sampling."""
    bins = ages // bin_years
    counts = np.bincount(bins)
    w = counts[bins].astype(np.float64) ** -power
    return w / w.sum()


def to_input(batch_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]."""
    return batch_u8.permute(0, 3, 1, 2).float().div_(255)


@torch.no_grad()
def predict(model, images: torch.Tensor, mean, std, batch: int = 512, channels_last=False):
    model.eval()
    device = next(model.parameters()).device
    outs: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch):
        x = (to_input(images[i : i + batch], mean, std) - mean) / std
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for k, v in model(x.to(device)).items():
            outs.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in outs.items()}


def finetune_config(cfg: dict) -> dict:
    """The config for fine-tuning a trained network: ``cfg`` with its ``finetune`` section's keys
    laid over the sections they name (e.g. fewer epochs, a lower learning rate, an extra
    augmentation)."""
    return _overlay(cfg, cfg.get("finetune") or {}, "finetune")


def variant_config(cfg: dict, name: str) -> dict:
    """The config of another recipe: ``cfg`` with ``variants.<name>`` laid over it the same way
    (e.g. another backbone with its input size and schedule)."""
    variants = cfg.get("variants") or {}
    if name not in variants:
        known = ", ".join(variants) or "none"
        raise ValueError(f"no variant '{name}' in the config (it has: {known})")
    return _overlay(cfg, variants[name] or {}, f"variants.{name}")


def _overlay(cfg: dict, sections: dict, where: str) -> dict:
    out = dict(cfg)
    for section, values in sections.items():
        if not isinstance(values, dict) or not isinstance(cfg.get(section), dict):
            raise ValueError(f"{where}.{section}: must name a section of the config, as a mapping")
        out[section] = _laid_over(cfg[section], values, f"{where}.{section}")
    return out


def _laid_over(base: dict, values: dict, where: str) -> dict:
    """``base`` with ``values`` laid over it, nested mappings key by key; a key ``base`` lacks
    is a typo, not a new setting."""
    out = dict(base)
    for key, value in values.items():
        if key not in base:
            raise ValueError(f"{where}.{key}: no such key in the config")
        if isinstance(value, dict) and isinstance(base[key], dict):
            value = _laid_over(base[key], value, f"{where}.{key}")
        out[key] = value
    return out


def load_init(path: str | Path, model_cfg: dict) -> dict:
    """The weights of the checkpoint a fine-tuning starts from; its network must be ours."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if model_options(ckpt["config"]["model"]) != model_options(model_cfg):
        raise ValueError(f"{path} was trained with another model section than this config")
    return ckpt["state_dict"]


@dataclass
class _Faces:
    """The decoded faces of a run (uint8 N x S x S x 3, as cached), their labels and split."""

    images: torch.Tensor
    labels: dict[str, np.ndarray]
    targets: dict[str, torch.Tensor]  # the labels of the network's heads
    train: np.ndarray  # indices of the readable training faces
    val: np.ndarray


@dataclass
class _Schedule:
    """Learning rate per step: warm-up then cosine. With a wall-clock budget the cosine advances
    by whichever is further along, the step count or the elapsed share of the budget, and
    training stops when it reaches the end (on an unloaded machine sized so the step count binds,
    the run is exactly reproducible)."""

    lr: float
    total_steps: int
    warmup: int
    min_ratio: float
    budget_s: float
    started: float

    def lr_at(self, step: int) -> float | None:
        """The rate for ``step``, or None when the budget is spent."""
        progress = None
        if self.budget_s and step >= self.warmup:
            t_steps = (step - self.warmup) / max(1, self.total_steps - self.warmup)
            progress = max(t_steps, (time.time() - self.started) / self.budget_s)
            if progress >= 1.0:
                return None
        return lr_at(step, self.total_steps, self.warmup, self.lr, self.min_ratio, progress)


def train(
    cfg: dict,
    data: str,
    run_dir: str,
    manifest: str | None = None,
    log=print,
    init: str | None = None,
) -> dict:
    """Run one training, from scratch or from the weights of the checkpoint ``init`` (see
    ``finetune_config``); returns the final epoch's metrics. See module docstring for outputs."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    seed = int(cfg.get("seed", 0))
    seed_everything(seed)
    tcfg, dcfg, mcfg = cfg["train"], cfg["data"], cfg["model"]
    threads = int(tcfg.get("threads", 0)) or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = torch.device(tcfg.get("device", "cuda" if torch.cuda.is_available() else "cpu"))
    amp = device.type == "cuda" and tcfg.get("amp", "auto") in ("auto", True)

    faces = _load_faces(cfg, data, manifest, run, log)
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {**cfg, "run": {"data": str(data), "manifest": manifest, "init": init}},
            sort_keys=False,
        )
    )
    mean = torch.tensor(dcfg.get("mean", [0.5] * 3)).view(1, 3, 1, 1)
    std = torch.tensor(dcfg.get("std", [0.25] * 3)).view(1, 3, 1, 1)
    channels_last = bool(tcfg.get("channels_last", True))
    model = _network(mcfg, init, device, channels_last, log)
    size = int(dcfg["input_size"])
    params, flops = count_params(model), count_flops(model, size)
    log(f"model {mcfg['backbone']} params={params} flops/face={flops / 1e9:.3f}G")
    criterion = MultiTaskLoss(cfg.get("loss"))
    opt = _optimizer(model, tcfg)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    bs, epochs = int(tcfg["batch_size"]), int(tcfg["epochs"])
    steps_per_epoch = max(1, len(faces.train) // bs)
    schedule = _Schedule(
        lr=float(tcfg["lr"]),
        total_steps=steps_per_epoch * epochs,
        warmup=int(float(tcfg.get("warmup_epochs", 1)) * steps_per_epoch),
        min_ratio=float(tcfg.get("min_lr_ratio", 0.01)),
        budget_s=float(tcfg.get("time_budget_min", 0) or 0) * 60,
        started=time.time(),
    )
    gen = torch.Generator().manual_seed(seed)
    weights = _sampling_weights(cfg.get("sampling", {}) or {}, faces)
    aug_cfg, crop = cfg.get("augment", {}) or {}, float(dcfg.get("crop", 1.0))
    mean_d, std_d = mean.to(device), std.to(device)

    history: list[dict] = []
    step = 0
    stop = False
    for epoch in range(1, epochs + 1):
        model.train()
        if weights is not None:
            order = torch.multinomial(weights, steps_per_epoch * bs, True, generator=gen)
        else:
            order = torch.randperm(len(faces.train), generator=gen)
        t_ep = time.time()
        batches = torch.from_numpy(faces.train)[order].split(bs)[:steps_per_epoch]
        sums: dict[str, float] = {}
        done = 0
        for b, idx in enumerate(batches):
            lr = schedule.lr_at(step)
            if lr is None:
                log(f"time budget reached at epoch {epoch} step {b}; stopping")
                stop = True
                break
            for g in opt.param_groups:
                g["lr"] = lr
            x = to_input(faces.images[idx].to(device, non_blocking=True), mean, std)
            x = augment(x, aug_cfg, gen, crop)
            x = random_erase((x - mean_d) / std_d, aug_cfg, gen)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            targets = {k: v[idx].to(device) for k, v in faces.targets.items()}
            with torch.autocast(device.type, enabled=amp):
                outputs = model(x)
            loss, parts = criterion(outputs, targets)
            _step(opt, scaler, loss, model, tcfg.get("grad_clip"))
            step += 1
            done += 1
            for k, v in {"loss": loss, **{f"loss_{k}": v for k, v in parts.items()}}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if b % int(tcfg.get("log_every", 50)) == 0:
                log(
                    f"epoch {epoch} step {b}/{steps_per_epoch} loss {float(loss.detach()):.4f} "
                    f"lr {opt.param_groups[0]['lr']:.2e} {time.time() - t_ep:.0f}s"
                )
        row = {"epoch": epoch, "steps": max(1, done), "lr": opt.param_groups[0]["lr"]}
        row.update({k: v / max(1, done) for k, v in sums.items()})
        row["epoch_s"] = round(time.time() - t_ep, 1)
        row.update(_validate(model, faces, mean, std))
        history.append(row)
        log(
            f"epoch {epoch} "
            + " ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float))
        )
        _write_history(run, history)
        if stop:
            break
    train_s = time.time() - schedule.started
    ckpt = {
        "state_dict": model.state_dict(),
        "config": cfg,
        "input_size": size,
        "crop": crop,
        "mean": mean.flatten().tolist(),
        "std": std.flatten().tolist(),
        "split": {
            "seed": int(dcfg.get("split_seed", 0)),
            "val_fraction": float(dcfg.get("val_fraction", 0.1)),
        },
        "n_train": int(len(faces.train)),
        "n_val": int(len(faces.val)),
        "train_seconds": train_s,
        "steps": step,
        "epochs_run": step / steps_per_epoch,
        "stopped_by_budget": stop,
        "params": params,
        "flops": flops,
        "data": str(data),
        "init": init,
        "final_metrics": history[-1],
    }
    torch.save(ckpt, run / "final.pt")
    log(f"done in {train_s / 60:.1f} min -> {run / 'final.pt'}")
    return history[-1]


def _load_faces(cfg: dict, data: str, manifest: str | None, run: Path, log) -> _Faces:
    """The run's faces decoded at the input size (from the cache when there), split by the
    seeded hash of their names; the split is written to the run folder."""
    dcfg = cfg["data"]
    size, crop = int(dcfg["input_size"]), float(dcfg.get("crop", 1.0))
    split_seed, val_fraction = int(dcfg.get("split_seed", 0)), float(dcfg.get("val_fraction", 0.1))
    records = datasets.load_records(data, manifest)
    root = datasets.image_root(data, manifest)
    train_recs, val_recs = datasets.split_records(records, split_seed, val_fraction)
    datasets.write_split(
        run / "split.json", train_recs, val_recs, seed=split_seed, val_fraction=val_fraction
    )
    t0 = time.time()
    images, ok = datasets.cached_images(records, root, size, crop, dcfg.get("cache_dir", "cache"))
    log(f"loaded {len(records)} faces at {size}px in {time.time() - t0:.1f}s")
    key_to_idx = {r.path: i for i, r in enumerate(records)}
    tr_idx = np.array([key_to_idx[r.path] for r in train_recs if ok[key_to_idx[r.path]]])
    va_idx = np.array([key_to_idx[r.path] for r in val_recs if ok[key_to_idx[r.path]]])
    if len(tr_idx) == 0:
        raise datasets.DataError("no training faces")
    labels = datasets.labels_array(records)
    heads = cfg["model"]["heads"]
    targets = {k: torch.from_numpy(v) for k, v in labels.items() if k in heads}
    return _Faces(torch.from_numpy(images), labels, targets, tr_idx, va_idx)


def _network(mcfg: dict, init: str | None, device, channels_last: bool, log) -> torch.nn.Module:
    """The network on ``device``, from the ``init`` checkpoint's weights, pretrained weights or
    a seeded random start."""
    model = build_model(mcfg)
    if init:
        model.load_state_dict(load_init(init, mcfg))
        log(f"fine-tuning from {init}")
    elif mcfg.get("pretrained"):
        log(f"starting from pretrained weights: {load_pretrained(model, mcfg['backbone'])}")
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _optimizer(model: torch.nn.Module, tcfg: dict) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices and kernels only (not biases or norms)."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    wd = float(tcfg["weight_decay"])
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=float(tcfg["lr"]),
        betas=tuple(tcfg.get("betas", (0.9, 0.999))),
    )


def _sampling_weights(sampling: dict, faces: _Faces) -> torch.Tensor | None:
    """Per-training-face draw weights for class-balanced sampling, or None (a shuffle)."""
    if not sampling.get("balanced"):
        return None
    ages = faces.labels["age"][faces.train]
    bins, power = int(sampling.get("bin_years", 5)), float(sampling.get("power", 0.5))
    return torch.from_numpy(sample_weights(ages, bins, power))


def _step(opt, scaler, loss: torch.Tensor, model: torch.nn.Module, grad_clip) -> None:
    """One backward pass and optimiser step (gradients scaled under mixed precision)."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(grad_clip))
    scaler.step(opt)
    scaler.update()


def _validate(model: torch.nn.Module, faces: _Faces, mean, std) -> dict[str, float]:
    """The validation faces' age metrics and gender accuracy, as ``val_*`` columns."""
    if not len(faces.val):
        return {}
    out = predict(model, faces.images[torch.from_numpy(faces.val)], mean, std, 512, False)
    am = age_metrics(faces.labels["age"][faces.val], expected_age(out["age"]).numpy())
    row = {f"val_{k}": v for k, v in am.items() if k != "n"}
    if "gender" in out:
        pf = out["gender"].softmax(1)[:, 1].numpy()
        row["val_gender_acc"] = gender_metrics(faces.labels["gender"][faces.val], pf)["gender_acc"]
    return row


def _write_history(run: Path, history: list[dict]) -> None:
    (run / "metrics.json").write_text(json.dumps(history, indent=1))
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
