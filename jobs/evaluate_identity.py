"""``jobs.evaluate`` on an identity set (LFW pairs): verification with the face-embedding model.

Each image's face is found by the pipeline's detector (MTCNN), aligned onto the embedding
model's crop template as the pipeline aligns video faces, and embedded; a pair's score is the
cosine of its two embeddings. Reported: EER, TAR at FAR = 1e-3, the protocol's cross-validated
accuracy (``model.verification``) and the detector's recall on the images (a miss is aligned
from the LFW face box).
"""

from __future__ import annotations

import numpy as np

from jobs.cli import UserError
from model import evaluation
from model.alignment import chip_detector
from model.face_sets import read_pairs
from model.verification import verification_metrics
from pipelines.embeddings import FaceEmbedder
from pipelines.predictions import ModelFileError


def evaluate_identity(args, records: list) -> dict:
    for flag in ("against", "realign", "eyeglasses", "plots"):
        if getattr(args, flag, None):
            raise UserError(f"--{flag} is not available for an identity pairs set")
    if args.split == "val":
        raise UserError("an identity pairs set has no val split: its folds are all evaluated")
    try:
        embedder = FaceEmbedder(args.model, args.threads)
    except ModelFileError as e:
        raise UserError(str(e)) from None
    pairs = read_pairs(args.data)
    detector = evaluation.MemoDetector(chip_detector())
    relative = evaluation.landmark_calibration(records, args.data, detector)
    images, ok, aligner = evaluation.aligned_faces(
        records, args.data, embedder.spec, detector, relative
    )
    index = {r.path: i for i, r in enumerate(records)}
    usable = [p for p in pairs if ok[index[p.a]] and ok[index[p.b]]]
    if not usable:
        raise UserError("no pair has two readable images")
    embeddings = embedder.embed(images)
    a = embeddings[[index[p.a] for p in usable]]
    b = embeddings[[index[p.b] for p in usable]]
    scores = (a * b).sum(axis=1)
    metrics = verification_metrics(
        scores, np.array([p.same for p in usable]), np.array([p.fold for p in usable])
    )
    metrics["images"] = int(ok.sum())
    return {
        "data_kind": "lfw",
        "identity": metrics,
        "detection": evaluation.detection_summary(aligner, "identity", relative is not None),
        "model": str(args.model),
        "model_version": embedder.spec.model_version,
    }


def format_identity(metrics: dict) -> str:
    m = metrics["identity"]
    tar, acc = m["tar_at_far_1e-3"], m["accuracy"]
    return (
        f"identity ({metrics['model_version']}): {m['pairs']} pairs of {m['images']} images\n"
        f"  EER {100 * m['eer']:.2f} % (cosine threshold {m['eer_threshold']:.3f})\n"
        f"  TAR {100 * tar['tar']:.2f} % at FAR {100 * tar['far']:.3f} % "
        f"(target FAR 0.1 %; {tar['impostors']} different-person pairs)\n"
        f"  accuracy {100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} % "
        f"({len(acc['folds'])} folds, each at the threshold best on the others)"
    )
