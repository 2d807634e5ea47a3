"""Train the multi-task face model: ``python -m jobs.train --config CFG --data DIR_OR_TAR``.

The config is config/train.yaml with the ``--config`` file laid over it (``model.train_config``);
the parts of the run are in ``model.training``, put together here in the order of torchvision's
reference training script.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import time
from pathlib import Path

import torch

from common.config import ConfigError
from jobs.cli import ArgumentParser, UserError, check_writable, one_line_warnings, run
from model import datasets
from model.losses import MultiTaskLoss
from model.network import count_flops, count_params
from model.train_config import TrainConfig, load_config
from model.training import (
    build_network,
    evaluate,
    load_init,
    make_optimizer,
    make_scheduler,
    save_checkpoint,
    seed_everything,
    train_one_epoch,
    write_history,
    write_run_config,
)
from model.training_data import load_faces, steps_per_epoch, write_split


def get_args_parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m jobs.train", description=__doc__)
    ap.add_argument("--config", required=True, help="YAML training config")
    ap.add_argument(
        "--data",
        required=True,
        action="append",
        help="a labelled face set, folder or .tar.gz; repeat it for several: UTKFace first (age, "
        "gender), then an emotion set (FER-2013 layout) or mask crops (labels.csv); each head "
        "learns from the faces labelled for it",
    )
    ap.add_argument(
        "--manifest",
        help="CSV path,age,gender[,race] replacing the first --data (paths relative to the CSV)",
    )
    ap.add_argument("--run-dir", required=True, help="output folder for config, metrics, final.pt")
    ap.add_argument(
        "--init",
        metavar="CKPT",
        help="fine-tune: start from this run's final.pt (same model section) and apply the "
        "config's finetune section (epochs, learning rate, extra augmentation)",
    )
    ap.add_argument(
        "--variant",
        metavar="NAME",
        help="train another recipe: lay the config's variants.NAME over it (glasses: drawn "
        "glasses from the first epoch, two of the shipped members)",
    )
    ap.add_argument("--epochs", type=int, help="override train.epochs")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="go on in --run-dir from its last completed epoch (last.pt), same arguments",
    )
    ap.add_argument(
        "--seed",
        type=int,
        help="override seed (initialisation, sampling, augmentation; the validation split has "
        "its own data.split_seed): how the members of an ensemble differ",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when trained; user errors print one line and give 2 (``jobs.cli.run``)."""
    args = get_args_parser().parse_args(argv)
    one_line_warnings()
    return run(lambda _: train(args))


def train(args) -> int:
    """One training run, from scratch or from ``--init``'s weights (``--resume``: on from the
    run folder's last completed epoch); see ``model.training`` for what the run folder
    receives."""
    cfg = read_config(args)
    init_state = read_init(args.init, cfg) if args.init else None
    try:  # before the data are loaded: a run folder that cannot be written fails now
        check_writable(args.run_dir, folder=True)
    except UserError as e:
        raise UserError(f"--run-dir: {e}") from None
    run_dir = Path(args.run_dir)
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.train.threads or os.cpu_count() or 1)
    device = choose_device(cfg)
    try:
        faces = load_faces(cfg, args.data, args.manifest, log)
    except datasets.DataError as e:
        raise UserError(str(e)) from None
    write_split(run_dir / "split.json", faces)
    write_run_config(run_dir, cfg, args.data, args.manifest, args.init)
    model = build_network(cfg.model, init_state, device, cfg.train.channels_last)
    if args.init:
        log(f"fine-tuning from {args.init}")
    params, flops = count_params(model), count_flops(model, cfg.data.input_size)
    log(f"model {cfg.model.backbone} params={params} flops/face={flops / 1e9:.3f}G")
    parts = _run_parts(model, cfg, faces, device)
    history, done_s = _resumed(run_dir, model, parts) if args.resume else ([], 0.0)
    started = time.time() - done_s
    for epoch in range(len(history) + 1, cfg.train.epochs + 1):
        criterion, optimizer, scheduler, scaler, gen = parts
        row = train_one_epoch(
            model, criterion, optimizer, scheduler, scaler, faces, epoch, gen, cfg, log
        )
        row.update(evaluate(model, faces, cfg))
        history.append(row)
        log(
            f"epoch {epoch} "
            + " ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float))
        )
        write_history(run_dir, history)
        save_progress(run_dir / LAST, model, parts, history, time.time() - started)
    train_s = time.time() - started
    steps = parts[2].last_epoch  # the scheduler steps once per optimiser step
    save_checkpoint(
        run_dir / "final.pt", model, cfg, faces, train_seconds=train_s, steps=steps,
        epochs_run=steps / steps_per_epoch(faces, cfg), params=params, flops=flops,
        data=list(args.data), init=args.init, final_metrics=history[-1],
    )  # fmt: skip
    log(f"done in {train_s / 60:.1f} min -> {run_dir / 'final.pt'}")
    return 0


LAST = "last.pt"  # the run's state after its last completed epoch, for --resume


def _run_parts(model, cfg: TrainConfig, faces, device) -> tuple:
    """(criterion, optimizer, scheduler, scaler, generator): what an epoch moves on."""
    amp = device.type == "cuda" and cfg.train.amp in ("auto", True)
    train_labels = {k: v[faces.train] for k, v in faces.targets.items()}
    criterion = MultiTaskLoss(cfg.loss, train_labels, cfg.model.heads)
    optimizer = make_optimizer(model, cfg.train)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    scheduler = make_scheduler(optimizer, cfg.train, steps_per_epoch(faces, cfg))
    gen = torch.Generator().manual_seed(cfg.seed)
    return criterion, optimizer, scheduler, scaler, gen


def save_progress(path: Path, model, parts: tuple, history: list, seconds: float) -> None:
    """Everything a run needs to go on after its last completed epoch, written atomically."""
    _, optimizer, scheduler, scaler, gen = parts
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),  # dropout draws from it
        "history": history,
        "seconds": seconds,
    }
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def _resumed(run_dir: Path, model, parts: tuple) -> tuple[list, float]:
    """The history and training seconds of the run folder's last completed epoch, with the
    model, optimiser, schedule and random stream put back where they were."""
    if not (run_dir / LAST).is_file():
        raise UserError(f"--resume: no {LAST} in {run_dir} (no epoch completed there)")
    state = torch.load(run_dir / LAST, map_location="cpu", weights_only=False)
    _, optimizer, scheduler, scaler, gen = parts
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    log(f"resuming after epoch {len(state['history'])} of {run_dir}")
    return state["history"], state["seconds"]


def read_config(args) -> TrainConfig:
    """The run's config: the ``--config`` file over the defaults, ``--variant``'s and (with
    ``--init``) the ``finetune`` overlay, then the command-line overrides."""
    try:
        cfg = load_config(args.config, args.variant, finetune=bool(args.init))
        if args.epochs:
            cfg = cfg.replace("train", epochs=args.epochs)
        if args.seed is not None:
            cfg = dataclasses.replace(cfg, seed=args.seed)
    except ConfigError as e:
        raise UserError(str(e)) from None
    return cfg


def read_init(path: str, cfg: TrainConfig) -> dict:
    """The weights a fine-tuning starts from, read before the data are loaded."""
    try:
        return load_init(path, cfg.model)
    except (OSError, KeyError, ValueError, RuntimeError, pickle.UnpicklingError) as e:
        raise UserError(f"cannot fine-tune from {path}: {e}") from None


def choose_device(cfg: TrainConfig) -> torch.device:
    if cfg.train.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(cfg.train.device)
    except RuntimeError as e:
        raise UserError(f"train.device: {e}") from None


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
