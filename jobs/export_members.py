"""Which trained runs become the members of an exported file, and how: each ``--run`` of
``jobs.export`` is one member, a run folder or, as ``A,B``, the mean of several runs' weights.

Members must agree on everything the file has once (input, normalisation, crop, validation
split); runs averaged into one member must also be one network trained on from one checkpoint,
the only case in which the mean of their weights is itself a working network.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from common.messages import first_line
from jobs.cli import UserError
from model.network import Ensemble, average_weights
from model.onnx_export import load_checkpoint

# What every ensemble member must share: the file has one input (size and normalisation), one
# crop template and one validation split.
SAME_IN_EVERY_MEMBER = ("input_size", "mean", "std", "crop", "split")


def runs_of(member: str) -> list[str]:
    """The run folders of one ``--run`` value: ``A`` or ``A,B`` (blanks around commas dropped)."""
    runs = [r.strip() for r in member.split(",") if r.strip()]
    if not runs:
        raise UserError(f"--run {member!r} names no run folder")
    return runs


def load_members(ckpt_paths: list[list[Path]], mirrored_heads: tuple[str, ...] = ()):
    """The members' networks as one module (an ``Ensemble`` when several or when heads are
    mirrored) and their checkpoints; members must share the file's input, crop, split and
    heads."""
    loaded = [_load_member(paths) for paths in ckpt_paths]
    first = loaded[0][1]
    for paths, (_, ckpt) in zip(ckpt_paths[1:], loaded[1:], strict=True):
        for key in SAME_IN_EVERY_MEMBER:
            if _shared(ckpt, key) != _shared(first, key):
                raise UserError(
                    f"{paths[0]} differs from {ckpt_paths[0][0]} in {key} ({ckpt[key]} vs "
                    f"{first[key]}): ensemble members must share input size, mean, std, crop "
                    "and split"
                )
    ckpts = [ckpt for _, ckpt in loaded]
    heads = {h for c in ckpts for h in c["config"]["model"]["heads"]}
    if set(mirrored_heads) - heads:
        raise UserError(
            f"--mirror-heads names {', '.join(sorted(set(mirrored_heads) - heads))}, which no "
            f"member has (their heads: {', '.join(sorted(heads))})"
        )
    if len(loaded) == 1 and not mirrored_heads:
        return loaded[0][0], ckpts
    try:
        return Ensemble([model for model, _ in loaded], mirrored_heads).eval(), ckpts
    except ValueError as e:
        raise UserError(f"{e}: the runs cannot be averaged into one file") from None


def _load_member(paths: list[Path]):
    """One member's network and checkpoint; for several runs, one network with the mean of
    their weights, refused unless they are one architecture trained on from one start."""
    loaded = [_load_checkpoint(p) for p in paths]
    if len(loaded) == 1:
        return loaded[0]
    (model, first), ckpts = loaded[0], [c for _, c in loaded]
    for path, ckpt in zip(paths[1:], ckpts[1:], strict=True):
        differs = [k for k in SAME_IN_EVERY_MEMBER if ckpt[k] != first[k]]
        if ckpt["config"]["model"] != first["config"]["model"]:
            differs.append("network")
        if differs:
            raise UserError(
                f"{path} differs from {paths[0]} in {', '.join(differs)}: their weights cannot "
                "be averaged"
            )
        _same_start(paths[0], first, path, ckpt)
    model.load_state_dict(average_weights([m.state_dict() for m, _ in loaded]))
    seconds = [c.get("train_seconds") for c in ckpts]
    data = [d for c in ckpts for d in as_list(c.get("data"))]
    merged = {k: v for k, v in first.items() if k not in ("final_metrics", "steps", "epochs_run")}
    return model, {
        **merged,
        "state_dict": model.state_dict(),
        "train_seconds": None if None in seconds else sum(seconds),
        "data": list(dict.fromkeys(data)) or first.get("data"),
    }


def _same_start(path_a: Path, a: dict, path_b: Path, b: dict) -> None:
    """Refuse two runs that were not trained on from the same checkpoint (``--init``)."""
    inits = [c.get("init") for c in (a, b)]
    if not all(inits):
        raise UserError(
            f"{path_a if not inits[0] else path_b} records no --init: only runs trained on "
            "from the same checkpoint can be averaged; give them as separate --run members"
        )
    if Path(inits[0]).resolve() != Path(inits[1]).resolve():
        raise UserError(
            f"{path_b} and {path_a} were trained on from different checkpoints ({inits[1]} vs "
            f"{inits[0]}): the mean of their weights would be no network"
        )


def as_list(data) -> list:
    """A checkpoint's ``data``: a list of face sets (older runs: one path as a string)."""
    if isinstance(data, list):
        return data
    return [data] if data else []


def _load_checkpoint(path: Path):
    try:
        return load_checkpoint(path)
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, ValueError, TypeError,
            AttributeError, ImportError, IndexError) as e:  # fmt: skip
        raise UserError(
            f"{path} is not a training checkpoint of this project: {first_line(e)}"
        ) from None


def _shared(ckpt: dict, key: str):
    """What members must agree on; of the split, the UTKFace part (a member trained on further
    sets also records how those were split)."""
    value = ckpt[key]
    return (value["seed"], value["val_fraction"]) if key == "split" else value
