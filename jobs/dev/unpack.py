"""Rebuild the run folders of a shipped model file, to train its members on where the original
runs are gone (a fresh machine keeps only what git holds).

``python -m jobs.dev.unpack --model model/weights/age_gender.onnx --data FACES
--member runs/ft-seed1 --member runs/g30-seed1:glasses --member runs/mtm-seed0:multitask_masks``

Each ``--member DIR[:VARIANT]``, in the file's member order, gets ``DIR/final.pt``: the member's
network (``model.onnx_import``: norms split back out of the convolutions with statistics from
512 training faces of ``--data``) and the config of ``config/train.yaml`` with that variant, the
recipe it was trained with, whose model section must match the member's heads. ``jobs.train
--init DIR/final.pt`` then continues it and ``jobs.export --run DIR`` exports it. The check at the
end prints, per member, the largest logit difference between the rebuilt network and the file
on real faces: the rebuilt network computes the file's function, up to float rounding.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import onnx
import torch

from jobs.cli import ArgumentParser, UserError, one_line_warnings, run
from model import datasets
from model.alignment import sample_chips
from model.network import build_model
from model.onnx_import import folded_members, load_folded, unfold
from model.preprocess import chip_inputs
from model.train_config import as_plain, load_config
from schemas.model_file import ModelSpec

STATISTICS_FACES = 512  # training faces whose activations set each norm's statistics


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when done; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_unpack, argv)


def _unpack(argv: list[str] | None) -> int:
    ap = ArgumentParser(prog="python -m jobs.dev.unpack", description=__doc__)
    ap.add_argument("--model", required=True, help="the exported .onnx file (FP32 or FP16)")
    ap.add_argument("--data", required=True, help="UTKFace folder or .tar.gz (norm statistics)")
    ap.add_argument("--config", default=None, help="config overlay (default: the defaults)")
    ap.add_argument(
        "--member", action="append", required=True, metavar="DIR[:VARIANT]",
        help="run folder for the next member, with the recipe (variant) it was trained with",
    )  # fmt: skip
    args = ap.parse_args(argv)
    one_line_warnings()
    torch.set_num_threads(2)
    try:
        spec = ModelSpec.from_metadata(
            {p.key: p.value for p in onnx.load(args.model).metadata_props}
        )
        members = folded_members(args.model)
    except (OSError, ValueError, onnx.onnx_cpp2py_export.checker.ValidationError) as e:
        raise UserError(f"{args.model} is not a model file of this project: {e}") from None
    if len(members) != len(args.member):
        raise UserError(f"{args.model} has {len(members)} member(s); give --member for each")
    records = datasets.load_records(args.data, None)
    train, _ = datasets.split_records(records, *_split(spec))
    chips = sample_chips(str(datasets.image_root(args.data, None)), train, STATISTICS_FACES, seed=3)
    inputs = torch.from_numpy(chip_inputs(chips, spec))
    report = {}
    for k, member in enumerate(args.member):
        folder, _, variant = member.partition(":")
        member = (k, members[k])
        report[folder] = _rebuild(Path(folder), variant or None, member, spec, inputs, args)
    print(json.dumps(report, indent=1))
    return 0


def _training_faces(spec: ModelSpec, member: int) -> int:
    """The member's training faces as the file's ``training_data`` names them (0: not named)."""
    named = re.search(r"training faces per member: ([\d, ]+)", spec.training_data or "")
    counts = [int(n) for n in named.group(1).split(",")] if named else []
    return counts[member] if member < len(counts) else 0


def _split(spec: ModelSpec) -> tuple[int, float]:
    split = json.loads(spec.extra["val_split"])
    return int(split["seed"]), float(split["val_fraction"])


def _rebuild(folder: Path, variant, member: tuple, spec: ModelSpec, inputs, args) -> dict:
    """One member's ``final.pt`` written; its largest logit difference from the file's member
    before and after unfolding (both should be float rounding)."""
    index, folded = member  # the member's place in the file, its folded weights
    cfg = load_config(args.config, variant, finetune=variant is None)
    heads = sorted({k.split(".")[1] for k in folded if k.startswith("heads.")})
    if heads != sorted(cfg.model.heads):
        raise UserError(
            f"{folder}: the file's member has heads {heads}, variant {variant} has "
            f"{sorted(cfg.model.heads)}: name the variant it was trained with"
        )
    net = build_model(cfg.model)
    load_folded(net, folded)
    with torch.no_grad():
        before = net.eval()(inputs)
        unfold(net, inputs.split(128))
        after = net.eval()(inputs)
    drift = max(float((before[h] - after[h]).abs().max()) for h in before)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(_checkpoint(net, cfg, spec, args, index), folder / "final.pt")
    return {"variant": variant, "heads": heads, "unfold_max_abs_logit_change": drift}


def _checkpoint(net, cfg, spec: ModelSpec, args, member: int) -> dict:
    """What ``model.training.save_checkpoint`` writes, from the file's metadata."""
    split = json.loads(spec.extra["val_split"])
    return {
        "state_dict": net.state_dict(),
        "config": as_plain(cfg),
        "input_size": spec.input_size,
        "crop": float(spec.extra["chip_crop"]),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "split": {
            k: split[k] for k in ("seed", "val_fraction", "group_val_fraction") if k in split
        },
        "n_train": _training_faces(spec, member),
        "unpacked_from": str(args.model),
    }


if __name__ == "__main__":
    sys.exit(main())
