"""Rebuild the run folders of a shipped model file, to train its members on where the original
runs are gone (a fresh machine keeps only what git holds).

``python -m jobs.dev.unpack --model model/weights/age_gender.onnx --data FACES
--member runs/ft-seed1 --member runs/g30-seed1:glasses --member runs/mt-soup:multitask_weighted``

Each ``--member DIR[:VARIANT]``, in the file's member order, gets ``DIR/final.pt``: the member's
network (``model.onnx_import``: norms split back out of the convolutions with statistics from
512 training faces of ``--data``) and the config of ``config/train.yaml`` with that variant, the
recipe it was trained with, whose model section must match the member's heads. ``jobs.train
--init DIR/final.pt`` then continues it and ``jobs.export --run DIR`` exports it. Nothing is written
until the rebuilt members, averaged as the file averages them (with the heads its metadata names
mirrored), give every output of the file on real faces (``model.onnx_export.parity``, within
``TOLERANCE``); a folder that already holds a ``final.pt`` is refused. A member without
``:VARIANT`` gets the ``finetune`` section, the recipe of a fine-tuned seed; a member exported as
the mean of several runs' weights comes back as one network. The report names the other
``jobs.export`` options the file needs (``export_with``: ``--mirror-heads``). Members with the
same heads and recipe cannot be told apart by the file: their order is the user's word.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import torch

from common.config import ConfigError
from jobs.cli import ArgumentParser, UserError, one_line_warnings, run
from model import datasets
from model.alignment import sample_chips
from model.evaluation import split_settings
from model.network import Ensemble, MultiTaskNet, build_model
from model.onnx_export import parity
from model.onnx_import import folded_members, load_folded, unfold
from model.preprocess import chip_crop, chip_inputs
from model.train_config import TrainConfig, as_plain, load_config
from pipelines.predictions import ModelFileError, load_model_spec
from schemas.model_file import ModelSpec

STATISTICS_FACES = 512  # training faces whose activations set each norm's statistics
CHECK_FACES = 128  # of those, the faces the rebuilt members are checked on against the file
# Largest output difference from the file that is float rounding: the file computes in another
# order (folded norms, ONNX Runtime kernels); a wrong member differs by whole logits.
TOLERANCE = 1e-3


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when done; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_unpack, argv)


def _unpack(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    one_line_warnings()
    torch.set_num_threads(2)
    folders = [Path(m.partition(":")[0]) for m in args.member]
    if len({f.resolve() for f in folders}) < len(folders):
        raise UserError("each --member needs a folder of its own")
    spec, members = _read_file(args.model)
    if len(members) != len(args.member):
        raise UserError(f"{args.model} has {len(members)} member(s); give --member for each")
    for folder in folders:
        if (folder / "final.pt").exists():
            raise UserError(f"{folder / 'final.pt'} exists: unpack into folders without one")
    recipes = [m.partition(":")[2] or None for m in args.member]
    cfgs = [
        _member_config(args.config, r, spec, members[k], folders[k]) for k, r in enumerate(recipes)
    ]
    nets = [_folded_net(cfg, members[k], folders[k]) for k, cfg in enumerate(cfgs)]
    inputs = _statistics_inputs(spec, args.data)  # the slow part, once every member fits
    report: dict = {"members": {}}
    for folder, net, cfg, recipe in zip(folders, nets, cfgs, recipes, strict=True):
        report["members"][str(folder)] = {
            "recipe": recipe or "finetune",
            "heads": sorted(cfg.model.heads),
            "unfold_max_abs_change": _unfold(net, inputs),
        }
    report["max_abs_difference_from_file"] = _check_against_file(nets, spec, args.model, inputs)
    # What jobs.export needs to give the file's function back from these folders.
    report["export_with"] = {"mirror_heads": ",".join(_mirrored_heads(spec))}
    for k, (folder, net, cfg) in enumerate(zip(folders, nets, cfgs, strict=True)):
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(_checkpoint(net, cfg, spec, args.model, k), folder / "final.pt")
    print(json.dumps(report, indent=1))
    return 0


def _parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m jobs.dev.unpack", description=__doc__)
    ap.add_argument("--model", required=True, help="the exported .onnx file (FP32 or FP16)")
    ap.add_argument("--data", required=True, help="UTKFace folder or .tar.gz (norm statistics)")
    ap.add_argument("--config", default=None, help="config overlay (default: the defaults)")
    ap.add_argument(
        "--member", action="append", required=True, metavar="DIR[:VARIANT]",
        help="run folder for the next member, with the recipe (variant) it was trained with",
    )  # fmt: skip
    return ap


def _read_file(path: str) -> tuple[ModelSpec, dict]:
    """The file's spec and its members' folded weights; a user error for anything that is not a
    floating-point model file of this project."""
    try:
        spec = load_model_spec(path)
        members = folded_members(onnx.load(path))
    except (ModelFileError, ValueError) as e:
        raise UserError(f"{path} cannot be unpacked: {e}") from None
    return spec, members


def _statistics_inputs(spec: ModelSpec, data: str) -> torch.Tensor:
    """Training faces of ``data`` (never validation ones), prepared as the file's input."""
    split = split_settings(spec.extra, "utkface")
    try:
        records = datasets.load_records(data, None)
        train, _ = datasets.split_records(records, split["seed"], split["val_fraction"])
        root = str(datasets.image_root(data, None))
    except datasets.DataError as e:
        raise UserError(str(e)) from None
    if not train:
        raise UserError(f"{data} holds no UTKFace training faces")
    chips = sample_chips(root, train, STATISTICS_FACES, seed=3)
    return torch.from_numpy(chip_inputs(chips, spec))


def _member_config(path, variant, spec: ModelSpec, folded: dict, folder: Path) -> TrainConfig:
    """The recipe the user names for a member, refused where it cannot be the member's: other
    heads, or another input size, crop or normalisation than the file's."""
    try:
        cfg = load_config(path, variant, finetune=variant is None)
    except ConfigError as e:
        raise UserError(f"{folder}: {e}") from None
    heads = sorted({k.split(".")[1] for k in folded if k.startswith("heads.")})
    if heads != sorted(cfg.model.heads):
        raise UserError(
            f"{folder}: the file's member has heads {heads}, recipe {variant or 'finetune'} has "
            f"{sorted(cfg.model.heads)}: name the variant it was trained with"
        )
    data = cfg.data
    file = (spec.input_size, chip_crop(spec), list(spec.mean), list(spec.std))
    recipe = (data.input_size, float(data.crop), list(data.mean), list(data.std))
    if not np.allclose(np.hstack(file), np.hstack(recipe)):
        raise UserError(
            f"{folder}: recipe {variant or 'finetune'} prepares faces as (size, crop, mean, std) "
            f"{recipe}, the file as {file}: name the variant or --config it was trained with"
        )
    return cfg


def _folded_net(cfg: TrainConfig, folded: dict, folder: Path) -> MultiTaskNet:
    """The recipe's network holding the member's folded weights (norms as identities)."""
    net = build_model(cfg.model)
    try:
        load_folded(net, folded)
    except ValueError as e:
        raise UserError(f"{folder}: the recipe's network is not the member's: {e}") from None
    return net


def _unfold(net: MultiTaskNet, inputs: torch.Tensor) -> float:
    """Split the norms back out of ``net``'s convolutions; the largest output change that made
    (float rounding)."""
    with torch.no_grad():
        before = net.eval()(inputs)
        unfold(net, inputs.split(128))
        after = net.eval()(inputs)
    return max(float((before[h] - after[h]).abs().max()) for h in before)


def _check_against_file(
    members: list[MultiTaskNet], spec: ModelSpec, path: str, inputs: torch.Tensor
) -> float:
    """The rebuilt members, combined as the file combines them (averaged, the heads the file
    names mirrored), against every output of the file on real faces; a user error when they do
    not compute the file's function."""
    mirrored = _mirrored_heads(spec)
    try:
        model: MultiTaskNet | Ensemble = (
            members[0] if len(members) == 1 and not mirrored else Ensemble(members, mirrored)
        )
    except ValueError as e:  # metadata naming a head no member has
        raise UserError(f"{path} cannot be unpacked: {e}") from None
    differences = parity(model, path, inputs[:CHECK_FACES].numpy())
    worst = max(differences, key=differences.get)
    if differences[worst] > TOLERANCE:
        raise UserError(
            f"the rebuilt members differ from {path} by {differences[worst]:.3g} in {worst}: "
            "check the members' order and recipes (nothing was written)"
        )
    return differences[worst]


def _mirrored_heads(spec: ModelSpec) -> list[str]:
    """The heads the file reads from the mirror image too (``jobs.export --mirror-heads``)."""
    return [h for h in spec.extra.get("mirrored_heads", "").split(",") if h]


def _checkpoint(net, cfg: TrainConfig, spec: ModelSpec, model_path: str, member: int) -> dict:
    """What ``model.training.save_checkpoint`` writes, from the file's metadata."""
    split = {**split_settings(spec.extra, "utkface"), **split_settings(spec.extra, "masks")}
    return {
        "state_dict": net.state_dict(),
        "config": as_plain(cfg),
        "input_size": spec.input_size,
        "crop": chip_crop(spec),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "split": split,
        "n_train": _training_faces(spec, member),
        "data": _training_sets(spec, cfg),
        "unpacked_from": str(model_path),
    }


def _named_training(spec: ModelSpec) -> tuple[list[str], list[int]]:
    """The face sets (file names) and the training faces per member that the file's
    ``training_data`` names, in the form ``jobs.export`` writes: "A + B (training faces per
    member: N, M)"; empty where a file does not name them."""
    named = re.fullmatch(r"(.*) \(training faces per member: ([\d, ]+)\)", spec.training_data or "")
    if not named:
        return [], []
    sets = [s for s in named.group(1).split(" + ") if s]
    return sets, [int(n) for n in named.group(2).split(",")]


def _training_faces(spec: ModelSpec, member: int) -> int:
    """The member's training faces as the file names them (0: not named)."""
    counts = _named_training(spec)[1]
    return counts[member] if member < len(counts) else 0


def _training_sets(spec: ModelSpec, cfg: TrainConfig) -> list[str]:
    """The face sets the file says its members read, for ``jobs.export`` to name them again: a
    member with age and gender heads only read the first (UTKFace, the one set with those
    labels); one with more heads, all of them."""
    sets = _named_training(spec)[0]
    return sets[:1] if set(cfg.model.heads) <= {"age", "gender"} else sets


if __name__ == "__main__":
    sys.exit(main())
