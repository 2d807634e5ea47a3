"""Evaluate an exported ONNX face model with ONNX Runtime (no torch needed): age and gender on
UTKFace, the mask-status or emotion head on a mask or emotion set.

``python -m jobs.evaluate --model model.onnx --data DIR_OR_TAR [--manifest CSV] [--realign]
[--split val|all] [--split-seed N] [--eyeglasses SEED] [--face-masks SEED] [--against OTHER.onnx]
[--detector mtcnn|yunet] [--min-score S]
[--json out.json] [--plots DIR]``

Faces are prepared exactly as in training (``model.preprocess``: centred crop of the chip by the
model's ``chip_crop`` metadata, area resize to the input size, mean/std normalisation). ``--split
val`` re-derives the validation split the model was trained without from the file names and the
split seed/fraction stored in the model's metadata (override with ``--split-seed`` /
``--val-fraction``). ``--against`` runs a second model on the same faces, each prepared for its
own model, and tests the difference face by face (``model.metrics.paired_comparison``): the
figure to quote when choosing between two files, not the two MAEs side by side.

An emotion set (FER-2013 folders) or a mask set (``labels.csv`` and crops) is told by what
``--data`` holds (``model.face_sets``). Its faces are aligned onto each model's own crop template
as training aligned them (``model.alignment``: detected landmarks, else the face's box), and the
head the set labels is reported: accuracy, macro-F1, recall per class, the confusion matrix, the
face detector's recall per class, and the head's figures on the faces it found and on those
aligned from their box, apart. ``--split val`` is the set's own val folder (emotion) or the
photos the model's seeded split held out (mask); ``--against`` compares the head face by face.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

from jobs.cli import (
    ArgumentParser,
    UserError,
    check_writable,
    one_line_warnings,
    reader_may_leave,
    run,
    setup_logging,
)
from jobs.evaluate_identity import evaluate_identity, format_identity
from jobs.evaluate_plots import write_head_plots, write_plots
from model import datasets, evaluation
from model.alignment import chip_detector
from model.face_sets import face_set_kind, read_face_set
from model.metrics import (
    class_metrics,
    evaluate_predictions,
    format_class_comparison,
    format_class_report,
    format_comparison,
    format_detection,
    format_report,
    paired_by_key,
)
from model.preprocess import chip_crop, prepare_chip
from pipelines.crops import align_face
from pipelines.faces import MtcnnDetector, face_on_chip
from pipelines.predictions import ModelFileError, open_session, read_spec
from pipelines.predictions import predict as predict_batch
from schemas.model_file import CLASS_NAMES


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
    predicts them, and the class probabilities (N x K) of each further head, by its name."""

    preds = [
        p
        for i in range(0, len(images), batch)
        for p in predict_batch(sess, spec, images[i : i + batch])
    ]
    out = {
        "age": np.array([p.age for p in preds], np.float32),
        "gender_prob": np.array([p.gender_prob for p in preds], np.float32),
    }
    for head in preds[0].extra if preds else ():
        out[head] = np.stack([p.extra[head] for p in preds])
    return out


def predict(sess, spec, args, records: list) -> dict:
    """One model's predictions on the UTKFace ``records`` ``args`` select, prepared for that
    model: its spec, the records it read, their labels and its ``age`` / ``gender_prob``."""
    split = evaluation.split_settings(spec.extra, "utkface", args.split_seed, args.val_fraction)
    seed, frac = split["seed"], split["val_fraction"]
    crop = chip_crop(spec)
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
    images = with_drawn(images[keep], spec, args)
    return {
        "spec": spec,
        "records": records,
        "labels": datasets.labels_array(records),
        "pred": run_model(sess, spec, images),
        "split": {"split": args.split, "seed": seed, "val_fraction": frac},
        "realign": realign_stats,
    }


def with_drawn(images: np.ndarray, spec, args) -> np.ndarray:
    """``images`` with synthetic glasses (``--eyeglasses SEED``) and masks (``--face-masks
    SEED``) drawn on where asked, placed by the model's crop template."""
    if args.eyeglasses is None and args.face_masks is None:
        return images
    try:  # the drawing needs torch, which the rest of this job runs without
        from model import eyeglasses, face_masks
    except ImportError:
        raise UserError("drawing glasses or masks needs torch: pip install -e .[train]") from None

    if args.eyeglasses is not None:
        eyes = eyeglasses.eyes_in_template(spec.crop_template, spec.input_size)
        images = eyeglasses.draw_on_images(images, args.eyeglasses, eyes)
    if args.face_masks is not None:
        face = face_masks.face_in_template(spec.crop_template, spec.input_size)
        images = face_masks.draw_on_images(images, args.face_masks, face)
    return images


def evaluate(args) -> dict:
    if not args.manifest and Path(args.data).exists() and face_set_kind(args.data) == "lfw":
        # an identity pairs set: its model is the embedding network, not a face-model file
        return evaluate_identity(args, read_face_set(args.data)[1])
    sess, spec = open_model(args.model, args.threads)
    other = open_model(args.against, args.threads) if args.against else None  # fail early
    kind, records = read_face_set(args.data, args.manifest)
    if kind != "utkface":
        return evaluate_head(args, kind, records, (sess, spec), other)
    run = predict(sess, spec, args, records)
    labels, pred = run["labels"], run["pred"]
    metrics = evaluate_predictions(
        labels["age"], pred["age"], labels["gender"], pred["gender_prob"], labels["race"]
    )
    metrics["split"] = run["split"]
    metrics["model"] = str(args.model)
    metrics["model_version"] = run["spec"].model_version
    metrics["eyeglasses_seed"] = args.eyeglasses
    metrics["face_masks_seed"] = args.face_masks
    if run["realign"] is not None:
        metrics["realign"] = dict(run["realign"])
    if other is not None:
        metrics["against"] = {
            "model": str(args.against),
            "model_version": other[1].model_version,
            "paired": compare(run, predict(*other, args, records)),
        }
    if args.plots:
        write_plots(Path(args.plots), labels["age"], pred["age"], metrics)
    return metrics


def evaluate_head(args, kind: str, records: list, model, other) -> dict:
    """An emotion or mask set: the head it labels (named as the set) on its faces aligned onto
    each model's template, the detector's recall on them, and ``--against`` face by face."""
    if args.realign:
        raise UserError(f"--realign is for UTKFace chips: {kind} faces are always aligned")
    head = kind
    for path, pair in ((args.model, model), (args.against, other)):
        if pair is not None:
            require_head(path, *pair, head, kind)
    split = evaluation.split_settings(model[1].extra, kind, args.split_seed, args.val_fraction)
    selected = datasets.select_split(
        records, args.split, split["seed"], split["group_val_fraction"]
    )
    if not selected:
        raise UserError("no faces in the selected split")
    detector = evaluation.MemoDetector(chip_detector(args.detector, args.min_score))
    relative = evaluation.landmark_calibration(records, args.data, detector)
    run = predict_head(*model, head, selected, detector, relative, args)
    metrics = {
        "data_kind": kind,
        "n": len(run["records"]),
        head: class_metrics(run["labels"][head], run["probs"][head], CLASS_NAMES[head]),
        "detection": {
            "detector": args.detector,
            **evaluation.head_detection(run, head, relative is not None),
        },
        "split": {"split": args.split, "by": evaluation.split_basis(selected), **split},
        "model": str(args.model),
        "model_version": model[1].model_version,
        "eyeglasses_seed": args.eyeglasses,
        "face_masks_seed": args.face_masks,
    }
    if other is not None:
        paired = evaluation.paired_heads(
            run, predict_head(*other, head, selected, detector, relative, args), [head]
        )
        metrics["against"] = {
            "model": str(args.against),
            "model_version": other[1].model_version,
            "paired": paired,
        }
    if args.plots:
        write_head_plots(Path(args.plots), metrics, [head])
    return metrics


def require_head(path: str, sess, spec, head: str, kind: str) -> None:
    """A one-line error unless the model has ``head`` in its metadata and its outputs."""
    outputs = {o.name for o in sess.get_outputs()}
    if head not in spec.heads or f"{head}_logits" not in outputs:
        heads = ", ".join(
            h for h in spec.heads if h in ("age", "gender") or f"{h}_logits" in outputs
        )
        raise UserError(f"{path} has no {head} head for this {kind} set (its heads: {heads})")


def predict_head(sess, spec, head: str, records: list, detector, relative, args) -> dict:
    """One model's ``head`` on the records, each face aligned onto that model's template: the
    records it read, their labels, the head's probabilities (in ``CLASS_NAMES`` order) and the
    aligner with the detector's counts."""
    images, ok, aligner = evaluation.aligned_faces(records, args.data, spec, detector, relative)
    keep = np.flatnonzero(ok)
    if not keep.size:
        raise UserError("no readable faces")
    records = [records[i] for i in keep]
    pred = run_model(sess, spec, with_drawn(images[keep], spec, args))
    return {
        "records": records,
        "labels": datasets.labels_array(records),
        "probs": {head: evaluation.in_class_order(head, spec.heads[head], pred[head])},
        "aligner": aligner,
    }


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


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when done; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_evaluate, argv)


DETECTOR_HELP = (
    "emotion and mask sets: the detector that finds and aligns their faces (mtcnn, as training; "
    "yunet with O-Net's landmarks, on crops enlarged to 320 px)"
)


def get_args_parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m jobs.evaluate", description=__doc__)
    ap.add_argument("--model", required=True, help="exported .onnx model")
    ap.add_argument(
        "--data",
        required=True,
        help="folder or .tar.gz: UTKFace chips, an emotion set (FER-2013 folders) or a mask set "
        "(labels.csv and crops); or the root of a --manifest",
    )
    ap.add_argument("--manifest", help="CSV path,age,gender[,race] (paths relative to the CSV)")
    ap.add_argument(
        "--split",
        choices=("val", "all"),
        default="all",
        help="val: the faces the model did not train on (UTKFace and mask sets: its own seeded "
        "split, from its metadata; an emotion set: its val folder); all (default): every face, "
        "for a dataset the model never saw",
    )
    ap.add_argument("--split-seed", type=int, default=None, help="default: model metadata")
    ap.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="default: model metadata (val_fraction; for a mask set group_val_fraction, the "
        "share of photos, 0.2 where the metadata lacks it)",
    )
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
        "--face-masks",
        type=int,
        metavar="SEED",
        help="robustness test: draw a synthetic mask worn over the nose (model/face_masks.py, "
        "seeded) on every face; needs torch (the train extra)",
    )
    ap.add_argument("--detector", choices=("mtcnn", "yunet"), default="mtcnn", help=DETECTOR_HELP)
    ap.add_argument("--min-score", type=float, default=0.6, help="--detector yunet: score floor")
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
        print(format_metrics(metrics, args))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1))
    return 0


def format_metrics(metrics: dict, args) -> str:
    """The report printed: age and gender for UTKFace; for an emotion or mask set its head and
    the detector's recall; then the paired comparison with ``--against``."""
    paired = metrics.get("against", {}).get("paired")
    if "data_kind" not in metrics:
        lines = [format_report(metrics)]
        if paired is not None:
            lines.append(format_comparison(paired, args.model, args.against))
        return "\n".join(lines)
    head = metrics["data_kind"]
    if head == "lfw":
        return "\n".join([format_identity(metrics), format_detection(metrics["detection"])])
    lines = [format_class_report(head, metrics[head]), format_detection(metrics["detection"])]
    if paired is not None:
        lines.append(format_class_comparison(paired, args.model, args.against))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
