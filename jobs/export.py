"""Export a trained run to ONNX with its metadata, check parity, measure throughput.

``python -m jobs.export --run runs/default --data DIR_OR_TAR --out model/weights/age_gender.onnx``

The crop template is estimated from the run's own training chips: the MTCNN detector
(``pipelines.faces``) runs on a seeded sample of them, and the averaged landmarks are mapped
through the chip -> input transform of ``model.preprocess``. A JSON report (parity, params,
FLOPs, throughput, template) is written next to the checkpoint as ``export.json``.

Several ``--run`` folders export an ensemble: one file whose outputs are the runs' averaged
probabilities (``model.network.Ensemble``); ``--half-weights`` keeps such a file small. A
``--run A,B`` is one member whose weights are the mean of runs A and B, fine-tunes of one start
(``model.network.average_weights``); ``--mirror-heads`` reads the named heads from each face and
its mirror image as well.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from jobs.cli import ArgumentParser, UserError, one_line_warnings, run, setup_logging
from jobs.export_members import as_list, load_members, runs_of
from model import datasets
from model.alignment import crop_template, sample_chips
from model.network import count_flops, count_params
from model.onnx_export import export_onnx, head_labels, license_text, parity
from model.preprocess import chip_inputs
from model.quantize import half_weights, quantize
from model.throughput import benchmark_table
from schemas.model_file import ModelSpec

MAX_FILE_MB = 20  # issue 3: the shipped ONNX file is at most 20 MB


def get_args_parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m jobs.export", description=__doc__)
    ap.add_argument(
        "--run",
        required=True,
        action="append",
        help="run folder holding final.pt; give it several times to export an ensemble of the "
        "runs (same input size, normalisation, crop, heads and validation split; their "
        "probabilities are averaged in the file); RUN_A,RUN_B is one member with the mean of "
        "those runs' weights (runs trained on from the same --init)",
    )
    ap.add_argument("--data", required=True, help="training data (UTKFace folder or .tar.gz)")
    ap.add_argument("--manifest", help="CSV manifest the run was trained on")
    ap.add_argument("--out", required=True, help="output .onnx path")
    ap.add_argument("--template-samples", type=int, default=400, help="chips for the template")
    ap.add_argument("--version", default=None, help="model_version (default: run name + date)")
    ap.add_argument("--no-bench", action="store_true", help="skip the throughput measurement")
    ap.add_argument(
        "--report",
        help="where the JSON report goes (default: RUN/export.json; for several runs, a folder "
        "named after them beside the first: runs/seed0+seed1/export.json)",
    )
    ap.add_argument(
        "--half-weights",
        action="store_true",
        help="store the weights as FP16 (half the file; inference stays FP32 at the same speed, "
        "outputs change by the rounding, reported as half_weights_max_abs)",
    )
    ap.add_argument(
        "--mirror-heads",
        default="",
        metavar="HEAD[,HEAD]",
        help="heads read from each face and its mirror image, averaged (e.g. emotion,mask: "
        "heads only one member has); costs that member's FLOPs again",
    )
    ap.add_argument(
        "--int8-out",
        help="also write a static INT8 (QDQ) copy here, calibrated on 256 training chips",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when done; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_export, argv)


def _export(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    one_line_warnings()
    setup_logging()  # Beam's import-time notes (pipelines modules) filtered as in every job
    ckpt_paths = [[Path(r) / "final.pt" for r in runs_of(member)] for member in args.run]
    for ckpt_path in (p for member in ckpt_paths for p in member):
        if not ckpt_path.is_file():
            raise UserError(f"no checkpoint at {ckpt_path}")
    try:
        report = export_run(args, ckpt_paths)
    except datasets.DataError as e:
        raise UserError(str(e)) from None
    print(json.dumps(report, indent=1))
    return 0


def export_run(args, ckpt_paths: list[list[Path]]) -> dict:
    """Export the runs as one file, check it against torch, and return the JSON report (also
    written to --report)."""
    torch.set_num_threads(2)
    model, ckpts = load_members(ckpt_paths, _mirrored(args))
    ckpt = ckpts[0]
    size, crop, split = int(ckpt["input_size"]), float(ckpt["crop"]), ckpt["split"]
    records = datasets.load_records(args.data, args.manifest)
    root = datasets.image_root(args.data, args.manifest)
    train_recs, val_recs = datasets.split_records(records, split["seed"], split["val_fraction"])

    t0 = time.time()
    template, n_faces, n_chips = crop_template(root, train_recs, args.template_samples, size, crop)
    t_template = time.time() - t0
    flops, params = count_flops(model, size), count_params(model)
    spec = model_spec(args, ckpts, template, params, flops)
    out = Path(args.out)
    names = export_onnx(model, spec, out)
    diffs, real, worst = check_parity(model, out, root, val_recs or train_recs, spec)

    report = (
        {"int8": export_int8(args.int8_out, out, root, train_recs, spec)} if args.int8_out else {}
    )
    if args.half_weights:  # after the INT8 copy, which is calibrated from the FP32 file
        report["half_weights_max_abs"] = store_half_weights(model, out, real)
    report.update(
        {
            "onnx": str(out),
            "size_mb": round(out.stat().st_size / 2**20, 2),
            "outputs": names,
            "members": list(args.run),
            "params": params,
            "flops_per_face": flops,
            "template": template.round(3).tolist(),
            "template_faces": n_faces,
            "template_chips": n_chips,
            "template_seconds": round(t_template, 1),
            "parity_max_abs": diffs,
            "parity_ok": worst <= 1e-4,
            "train_seconds": [c.get("train_seconds") for c in ckpts],  # None: not recorded
        }
    )
    return finish_report(args, report)


def check_parity(model, out: Path, root, records, spec: ModelSpec):
    """Torch against ONNX Runtime on random inputs and on 32 real chips (validation chips when
    there are any): the largest difference per output, the real inputs and the largest logit
    difference."""
    size = spec.input_size
    rand = np.random.default_rng(0).standard_normal((8, 3, size, size)).astype(np.float32)
    real = chip_inputs(sample_chips(str(root), records, 32, seed=1), spec)
    diffs = {"random": parity(model, out, rand), "real": parity(model, out, real)}
    worst = max(max(v for k, v in d.items() if k.endswith("_logits")) for d in diffs.values())
    if worst > 1e-4:
        warnings.warn(f"parity: max abs logit diff {worst:.2e} > 1e-4", stacklevel=1)
    return diffs, real, worst


def finish_report(args, report: dict) -> dict:
    """The throughput figures (unless --no-bench) and the size check added; the report written."""
    out = Path(args.out)
    if not args.no_bench:
        report["throughput_faces_per_s"] = benchmark_table(out)
        if "int8" in report:
            report["int8"]["throughput_faces_per_s"] = benchmark_table(args.int8_out)
    if report["size_mb"] > MAX_FILE_MB:
        warnings.warn(
            f"{out} is {report['size_mb']} MB, over the {MAX_FILE_MB} MB a shipped model may be "
            "(edge devices): use --half-weights or fewer runs",
            stacklevel=1,
        )
    report_path = Path(args.report) if args.report else default_report_path(args.run)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1))
    return report


def default_report_path(runs: list[str]) -> Path:
    first = runs_of(runs[0])
    if len(runs) == 1 and len(first) == 1:
        return Path(first[0]) / "export.json"
    return Path(first[0]).parent / _file_name(runs) / "export.json"


def _file_name(runs: list[str]) -> str:
    """``ft-seed1+mtw-seed0,mtc-seed0``: members joined by +, runs of one member by a comma."""
    return "+".join(",".join(Path(r).name for r in runs_of(member)) for member in runs)


def _mirrored(args) -> tuple[str, ...]:
    return tuple(h.strip() for h in args.mirror_heads.split(",") if h.strip())


def architecture(ckpts: list[dict]) -> str:
    """``resnet18 width=0.5``, or for an ensemble its members by recipe:
    ``ensemble of 3 (mean probabilities): 2 x resnet18 width=0.5 at 80 px, 1 x ...``."""
    names = [
        f"{c['config']['model']['backbone']} width={c['config']['model']['width']}" for c in ckpts
    ]
    if len(ckpts) == 1:
        return names[0]
    kinds = Counter(f"{n} at {c['input_size']} px" for n, c in zip(names, ckpts, strict=True))
    parts = ", ".join(f"{n} x {k}" for k, n in kinds.items())
    return f"ensemble of {len(ckpts)} (mean probabilities): {parts}"


def model_spec(args, ckpts: list[dict], template, params: int, flops: int) -> ModelSpec:
    """The file's metadata (``schemas.model_file.ModelSpec``) from the first member's
    checkpoint, the template and the network's size."""
    ckpt = ckpts[0]
    cfg, size = ckpt["config"], int(ckpt["input_size"])
    name = _file_name(args.run)
    version = (
        args.version or f"{cfg['model']['backbone']}-{size}px-{name}-{time.strftime('%Y%m%d')}"
    )
    heads, mirrored = _heads(ckpts), _mirrored(args)
    return ModelSpec(
        input_size=size,
        mean=tuple(float(v) for v in ckpt["mean"]),
        std=tuple(float(v) for v in ckpt["std"]),
        crop_template=tuple((float(x), float(y)) for x, y in template),
        heads=head_labels(heads),
        model_version=version,
        training_data=_training_data(args, ckpts),
        license=license_text(heads),
        extra={
            "architecture": architecture(ckpts),
            "age_output": "expected age in years: sum_k k * softmax(age_logits)_k, k = 0..100",
            "chip_crop": str(float(ckpt["crop"])),
            "chip_preprocess": "centred square crop of chip_crop * shorter side, area resize",
            "val_split": json.dumps(_val_split(ckpts)),
            "params": str(params),
            "flops_per_face": str(flops),
            **({"mirrored_heads": ",".join(mirrored)} if mirrored else {}),
        },
    )


def _heads(ckpts: list[dict]) -> dict[str, int]:
    """Every head of the members, in the order they first appear."""
    heads: dict[str, int] = {}
    for c in ckpts:
        for name, n in c["config"]["model"]["heads"].items():
            heads.setdefault(name, n)
    return heads


def _training_data(args, ckpts: list[dict]) -> str:
    """The face sets the members were trained on, with the training faces of each member."""
    sets = []
    for c in ckpts:
        for path in as_list(c.get("data")) or [args.data]:
            if Path(path).name not in sets:
                sets.append(Path(path).name)
    if args.manifest:
        sets[0] = Path(args.manifest).name
    faces = ", ".join(str(c["n_train"]) for c in ckpts)
    return f"{' + '.join(sets)} (training faces per member: {faces})"


def _val_split(ckpts: list[dict]) -> dict:
    """How the validation faces were held out: UTKFace faces by file name, grouped sets (the
    mask crops) by photo."""
    split = {"seed": ckpts[0]["split"]["seed"], "val_fraction": ckpts[0]["split"]["val_fraction"]}
    grouped = [
        c["split"]["group_val_fraction"] for c in ckpts if "group_val_fraction" in c["split"]
    ]
    if grouped:
        split["group_val_fraction"] = grouped[0]
    return {**split, "hash": "sha1"}


def store_half_weights(model, out: Path, inputs: np.ndarray) -> dict[str, float]:
    """Rewrite ``out`` with FP16 weights; returns the largest change per output on ``inputs``
    against the torch model."""
    try:
        half_weights(out)
    except ValueError as e:
        raise UserError(f"{e}: export without --half-weights") from None
    changes = parity(model, out, inputs)
    rounding = max(v for k, v in changes.items() if k.endswith("_logits"))
    if not rounding <= 0.05:  # also catches NaN
        warnings.warn(f"FP16 weights change the logits by up to {rounding:.3g}", stacklevel=1)
    return changes


def export_int8(dst: str, src: Path, root: Path, train_recs, spec: ModelSpec) -> dict:
    """A static INT8 copy of ``src``, calibrated on 256 training chips (never validation)."""
    calib = chip_inputs(sample_chips(str(root), train_recs, 256, seed=2), spec)
    q = quantize(src, dst, "static", calib)
    return {"onnx": str(q), "size_mb": round(q.stat().st_size / 2**20, 2)}


if __name__ == "__main__":
    sys.exit(main())
