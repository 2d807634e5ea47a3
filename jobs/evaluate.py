"""Evaluate an exported ONNX age/gender model with ONNX Runtime (no torch needed).

``python -m jobs.evaluate --model model.onnx --data DIR_OR_TAR [--manifest CSV] [--realign]
[--split val|all] [--split-seed N] [--eyeglasses SEED] [--against OTHER.onnx] [--json out.json]
[--plots DIR]``

Faces are prepared exactly as in training (``model.preprocess``: centred crop of the chip by the
model's ``chip_crop`` metadata, area resize to the input size, mean/std normalisation). ``--split
val`` re-derives the validation split the model was trained without from the file names and the
split seed/fraction stored in the model's metadata (override with ``--split-seed`` /
``--val-fraction``). ``--against`` runs a second model on the same faces, each prepared for its
own model, and tests the difference face by face (``model.metrics.paired_comparison``): the
figure to quote when choosing between two files, not the two MAEs side by side.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jobs.cli import (
    ArgumentParser,
    UserError,
    check_writable,
    one_line_warnings,
    reader_may_leave,
    run,
    setup_logging,
)
from model import datasets
from model.metrics import evaluate_predictions, format_comparison, format_report, paired_by_key
from model.preprocess import prepare_chip
from pipelines.crops import align_face
from pipelines.faces import MtcnnDetector, face_on_chip
from pipelines.predictions import ModelFileError, open_session, read_spec
from pipelines.predictions import predict as predict_batch


def open_model(path: str, threads: int):
    """An ONNX Runtime session and the spec of a face model file, checked as the pipeline
    checks it."""

    if not Path(path).is_file():
        raise UserError(f"model not found: {path}")
    try:
        sess = open_session(path, threads)
        return sess, read_spec(sess, path)
    except ModelFileError as e:
        raise UserError(str(e)) from None


def run_model(sess, spec, images: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """``age`` and ``gender_prob`` of every image (N x S x S x 3 RGB uint8), as the pipeline
    predicts them."""

    preds = [
        p
        for i in range(0, len(images), batch)
        for p in predict_batch(sess, spec, images[i : i + batch])
    ]
    return {
        "age": np.array([p.age for p in preds], np.float32),
        "gender_prob": np.array([p.gender_prob for p in preds], np.float32),
    }


def predict(sess, spec, args) -> dict:
    """One model's predictions on the faces ``args`` select, prepared for that model: its spec,
    the records it read, their labels and its ``age`` / ``gender_prob`` outputs."""
    split_info = json.loads(spec.extra.get("val_split", "{}") or "{}")
    seed = args.split_seed if args.split_seed is not None else int(split_info.get("seed", 0))
    frac = args.val_fraction
    if frac is None:
        frac = float(split_info.get("val_fraction", 0.1))
    crop = float(spec.extra.get("chip_crop", "1.0"))
    records = datasets.load_records(args.data, args.manifest)
    records = datasets.select_split(records, args.split, seed, frac)
    if not records:
        raise UserError("no faces in the selected split")
    root = datasets.image_root(args.data, args.manifest)
    prepare, realign_stats = None, None
    if args.realign:
        prepare, realign_stats = _pipeline_prepare(spec, crop)
    images, ok = datasets.load_images(records, root, spec.input_size, crop, prepare)
    keep = np.flatnonzero(ok)
    records = [records[i] for i in keep]
    if not records:
        raise UserError("no readable faces")
    images = images[keep]
    if args.eyeglasses is not None:
        try:  # model.eyeglasses needs torch, which the rest of this job runs without
            from model.eyeglasses import draw_on_images, eyes_in_template
        except ImportError:
            raise UserError("--eyeglasses needs torch: pip install -e .[train]") from None

        eyes = eyes_in_template(spec.crop_template, spec.input_size)
        images = draw_on_images(images, args.eyeglasses, eyes)
    return {
        "spec": spec,
        "records": records,
        "labels": datasets.labels_array(records),
        "pred": run_model(sess, spec, images),
        "split": {"split": args.split, "seed": seed, "val_fraction": frac},
        "realign": realign_stats,
    }


def evaluate(args) -> dict:
    sess, spec = open_model(args.model, args.threads)
    other = open_model(args.against, args.threads) if args.against else None  # fail early
    run = predict(sess, spec, args)
    labels, pred = run["labels"], run["pred"]
    metrics = evaluate_predictions(
        labels["age"], pred["age"], labels["gender"], pred["gender_prob"], labels["race"]
    )
    metrics["split"] = run["split"]
    metrics["model"] = str(args.model)
    metrics["model_version"] = run["spec"].model_version
    metrics["eyeglasses_seed"] = args.eyeglasses
    if run["realign"] is not None:
        metrics["realign"] = dict(run["realign"])
    if other is not None:
        metrics["against"] = {
            "model": str(args.against),
            "model_version": other[1].model_version,
            "paired": compare(run, predict(*other, args)),
        }
    if args.plots:
        write_plots(Path(args.plots), labels["age"], pred["age"], metrics)
    return metrics


def compare(a: dict, b: dict) -> dict:
    """Paired comparison of two models' ``predict`` runs over the faces both read (the same
    faces unless the models' metadata name different validation splits); gender over the faces
    whose gender is labelled."""

    def by_face(run):
        labels, pred = run["labels"], run["pred"]
        right = (pred["gender_prob"] >= 0.5) == (labels["gender"] == 1)  # as gender_metrics
        err = np.abs(pred["age"] - labels["age"])
        known = labels["gender"] >= 0
        return {r.path: (err[i], right[i], known[i]) for i, r in enumerate(run["records"])}

    fa, fb = by_face(a), by_face(b)
    if not fa.keys() & fb.keys():
        raise UserError("the two models share no faces: their validation splits differ")
    return paired_by_key(fa, fb)


def _pipeline_prepare(spec, crop: float):
    """Feed chips as the video pipeline does: MTCNN landmarks on the (border-padded) chip, then a
    similarity warp onto the model's crop template. Chips without a detection fall back to the
    training preprocessing and are counted."""

    detector = MtcnnDetector(min_face_px=40, threads=2)
    template = np.asarray(spec.crop_template, np.float64)
    stats = {"aligned": 0, "fallback": 0}

    def prepare(rgb: np.ndarray) -> np.ndarray:
        padded, face, _ = face_on_chip(detector, rgb)
        if face is None:
            stats["fallback"] += 1
            return prepare_chip(rgb, spec.input_size, crop)
        stats["aligned"] += 1
        return align_face(padded, face.landmarks, template, spec.input_size)

    return prepare, stats


def write_plots(folder: Path, true_age, pred_age, metrics: dict) -> None:
    """The gender confusion matrix (when genders are known) and the age error by true age, as
    PNG files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if metrics.get("gender_n"):
        gender_confusion_plot(metrics).savefig(folder / "gender_confusion.png", dpi=100)
    age_error_plot(true_age, pred_age, metrics).savefig(folder / "age_error_by_age.png", dpi=100)


def gender_confusion_plot(metrics: dict) -> Figure:
    c = np.asarray(metrics["gender_confusion"])
    fig = Figure(figsize=(4, 3.5))
    ax = fig.subplots()
    ax.imshow(c, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(c[i, j]), ha="center", va="center")
    ax.set_xticks([0, 1], ["male", "female"])
    ax.set_yticks([0, 1], ["male", "female"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"gender (acc {100 * metrics['gender_acc']:.1f}%)")
    fig.tight_layout()
    return fig


def age_error_plot(true_age, pred_age, metrics: dict) -> Figure:
    t = np.asarray(true_age)
    err = np.asarray(pred_age) - t
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    ages = np.arange(0, 101)
    mae = [np.abs(err[t == a]).mean() if (t == a).any() else np.nan for a in ages]
    bias = [err[t == a].mean() if (t == a).any() else np.nan for a in ages]
    ax.plot(ages, mae, label="MAE")
    ax.plot(ages, bias, label="mean error (pred - true)", alpha=0.7)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("years")
    ax.set_title(f"age error by true age (MAE {metrics['mae']:.2f}, n={metrics['n']})")
    ax.legend()
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when done; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_evaluate, argv)


def get_args_parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m jobs.evaluate", description=__doc__)
    ap.add_argument("--model", required=True, help="exported .onnx model")
    ap.add_argument("--data", required=True, help="UTKFace folder or .tar.gz (or manifest root)")
    ap.add_argument("--manifest", help="CSV path,age,gender[,race] (paths relative to the CSV)")
    ap.add_argument(
        "--split",
        choices=("val", "all"),
        default="all",
        help="val: the faces the model did not train on (its own split of UTKFace, from its "
        "metadata); all (default): every face, for a dataset the model never saw",
    )
    ap.add_argument("--split-seed", type=int, default=None, help="default: model metadata")
    ap.add_argument("--val-fraction", type=float, default=None, help="default: model metadata")
    ap.add_argument("--json", help="write the metrics as JSON here")
    ap.add_argument("--plots", help="folder for PNG charts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--realign",
        action="store_true",
        help="feed faces as the video pipeline does: MTCNN landmarks + warp to the crop template",
    )
    ap.add_argument(
        "--eyeglasses",
        type=int,
        metavar="SEED",
        help="robustness test: draw synthetic glasses (model/eyeglasses.py, seeded) on every "
        "face; needs torch (the train extra)",
    )
    ap.add_argument(
        "--against",
        metavar="MODEL",
        help="also run this model on the same faces and test the difference pair by pair: age "
        "errors by a sign-flip test, gender by an exact McNemar test",
    )
    return ap


def _evaluate(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    one_line_warnings()
    setup_logging()  # Beam's import-time notes (pipelines modules) filtered as in every job
    try:
        if args.json:  # checked before the evaluation, not after it
            check_writable(args.json)
        if args.plots:
            check_writable(args.plots, folder=True)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            metrics = evaluate(args)
    except datasets.DataError as e:
        raise UserError(str(e)) from None
    with reader_may_leave():
        print(format_report(metrics))
        if "against" in metrics:
            print(format_comparison(metrics["against"]["paired"], args.model, args.against))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
