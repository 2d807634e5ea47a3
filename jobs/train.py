"""Train the multi-task face model: ``python -m jobs.train --config CFG --data DIR_OR_TAR``."""

from __future__ import annotations

import pickle
import sys
import time

from jobs.cli import ArgumentParser, UserError, check_writable, one_line_warnings, run


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when trained; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_train, argv)


def _train(argv: list[str] | None) -> int:
    ap = ArgumentParser(prog="python -m jobs.train", description=__doc__)
    ap.add_argument("--config", required=True, help="YAML training config")
    ap.add_argument("--data", required=True, help="UTKFace folder or .tar.gz (or manifest root)")
    ap.add_argument("--manifest", help="CSV path,age,gender[,race] (paths relative to the CSV)")
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
        "glasses from the first epoch, two of the shipped members; dlib: the pretrained dlib "
        "backbone at its 64 px input)",
    )
    ap.add_argument("--epochs", type=int, help="override train.epochs")
    ap.add_argument(
        "--seed",
        type=int,
        help="override seed (initialisation, sampling, augmentation; the validation split has "
        "its own data.split_seed): how the members of an ensemble differ",
    )
    ap.add_argument(
        "--time-budget-min",
        type=float,
        help="override train.time_budget_min: stop after this many minutes of training, the "
        "learning-rate schedule following the clock (0 = no budget)",
    )
    args = ap.parse_args(argv)
    one_line_warnings()

    from model import datasets
    from model.network import build_model, load_pretrained
    from model.train import finetune_config, load_config, load_init, train, variant_config

    try:
        cfg = load_config(args.config)
        if args.variant:
            cfg = variant_config(cfg, args.variant)
        model_cfg = cfg.get("model") or {}
        model = build_model(model_cfg)  # a bad backbone or option fails now, not after loading
        _fits_input(model, int((cfg.get("data") or {}).get("input_size", 0)))
        if args.init:
            cfg = finetune_config(cfg)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise UserError(f"cannot read config: {e}") from None
    if not args.init and model_cfg.get("pretrained"):
        try:  # installed and readable, checked before the data are loaded
            load_pretrained(model, model_cfg.get("backbone", "resnet18"))
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load the pretrained weights: {e}") from None
    if args.init:  # checked now, before the data are loaded; train() loads it again to use it
        try:
            load_init(args.init, cfg["model"])
        except (OSError, KeyError, ValueError, RuntimeError, pickle.UnpicklingError) as e:
            raise UserError(f"cannot fine-tune from {args.init}: {e}") from None
    if args.epochs:
        cfg["train"]["epochs"] = args.epochs
    if args.seed is not None:
        if not 0 <= args.seed < 2**32:
            raise UserError("--seed must be between 0 and 2**32 - 1")
        cfg["seed"] = args.seed
    if args.time_budget_min is not None:
        cfg["train"]["time_budget_min"] = args.time_budget_min

    try:  # before the data are loaded: a run folder that cannot be written fails now
        check_writable(args.run_dir, folder=True)
    except UserError as e:
        raise UserError(f"--run-dir: {e}") from None

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    try:
        train(cfg, args.data, args.run_dir, args.manifest, log=log, init=args.init)
    except datasets.DataError as e:
        raise UserError(str(e)) from None
    return 0


def _fits_input(model, size: int) -> None:
    """One face at the config's input size through the network, so a size the backbone cannot
    take (the dlib networks take 64 px only) fails before the data are loaded."""
    import torch

    if size < 16:
        raise ValueError(f"data.input_size must be at least 16, got {size}")
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"the network cannot take data.input_size {size}: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
