"""Score an analysis output against synthetic clips' ground truth, and compare two analyses.

python -m jobs.dev.score --truth clip.truth.json [more.truth.json ...] --output output/
    [--against other_output/] [--photos MODEL.onnx --faces FACES] [--json score.json]

Where a truth labels mask status or emotion (visitors drawn from a mask or emotion set), mask and
emotion accuracy are scored too, from the analysis' ``visitors.mask`` and ``visitors.emotion``
columns; an analysis without them scores the rest and says so. ``--photos`` runs the model on the
photos the clips were drawn from and sets each visitor's video reading of age and gender beside
its photo reading: a visitor right on the photo but wrong on video points at the video path
(rendering, detection, alignment, aggregation) rather than at the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import cv2
import numpy as np

from jobs.cli import (
    EXIT_OK,
    ArgumentParser,
    UserError,
    one_line_warnings,
    reader_may_leave,
    run,
    setup_logging,
)
from jobs.evaluate import open_model, run_model
from model.metrics import format_comparison, paired_comparison
from model.preprocess import chip_crop, prepare_chip
from simulation import SimulationError
from simulation.photos import open_faces
from simulation.score_text import paired_text, pooled_line
from simulation.scoring import compare, load_truth, pool, score


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m jobs.dev.score",
        description="Compare the visitors an analysis found in synthetic clips with the clips' "
        "ground truth: visitor count error, matched pairs, gender accuracy and age MAE, and mask "
        "and emotion accuracy where the truth has those labels; with several clips also their "
        "totals, and with --against a paired test against a second analysis of the same clips.",
        epilog="Predicted and true visitors are matched one to one, greedily by the IoU of their "
        "time spans ([start_s, end_s] vs [enter_s, leave_s]); each clip is found in the output's "
        "videos table by its file name. Each figure counts the matched visitors whose truth has "
        "its label (a face from an emotion or mask set has no age or gender); mask and emotion "
        "are read from the visitors table's mask and emotion columns, where the analysis has "
        "them. --against compares the true visitors matched in both analyses: age errors by a "
        "paired sign-flip test; gender, mask and emotion calls by an exact McNemar test.",
    )
    p.add_argument(
        "--truth",
        required=True,
        nargs="+",
        help="the clips' .truth.json files from jobs.dev.simulate",
    )
    p.add_argument("--output", required=True, help="the analysis output folder (jobs.analyze)")
    p.add_argument(
        "--against", metavar="OUTPUT", help="a second analysis of the same clips to compare with"
    )
    p.add_argument(
        "--photos",
        metavar="MODEL",
        help="also read each matched visitor's face photo with this model (the one the "
        "analysis used) and compare photo with video, visitor by visitor; needs --faces",
    )
    p.add_argument(
        "--faces", help="the face source the clips were drawn from (jobs.dev.simulate --faces)"
    )
    p.add_argument(
        "--threads", type=int, default=2, help="ONNX Runtime threads for --photos (default 2)"
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help="also write the scores as JSON here: the totals at the top level, each clip under "
        "'clips', the other analysis' totals and the paired test under 'against', each "
        "visitor's photo and video readings under 'photos'",
    )
    p.add_argument(
        "--min-iou", type=float, default=0.1, help="least time IoU for a match (default 0.1)"
    )
    return p


def photo_readings(truths: list[dict], results, model: str, faces: str, threads: int) -> dict:
    """``{(clip, truth id): (age, P(female))}``: the model's reading of the photo of each visitor
    with a true age and gender, prepared as in training and evaluation
    (``model.preprocess.prepare_chip``)."""
    sess, spec = open_model(model, threads)
    crop = chip_crop(spec)
    used = {r.model_version for r in results} - {spec.model_version}
    if used:
        warnings.warn(
            f"{model} is {spec.model_version}, but the analysis used {', '.join(sorted(used))}: "
            "photo and video readings come from different models",
            stacklevel=2,
        )
    keys = [
        (t["clip"]["file"], int(v["id"]), v.get("face"))
        for t in truths
        for v in t["visitors"]
        if v["age"] is not None and v["gender"] is not None  # a mask or emotion face has neither
    ]
    if any(face is None for _, _, face in keys):
        raise SimulationError("--photos needs truth files that name each visitor's face")
    source = open_faces(faces)
    by_path = {r.path: r for r in source.records}
    unknown = sorted({face for _, _, face in keys if face not in by_path})
    if unknown:
        raise SimulationError(f"{faces} lacks the face {unknown[0]}: pass the clips' face source")
    paths = sorted({face for _, _, face in keys})
    if not paths:
        return {}
    images = {
        f.key: prepare_chip(cv2.cvtColor(f.image, cv2.COLOR_BGR2RGB), spec.input_size, crop)
        for f in source.load_many([by_path[p] for p in paths])
    }
    pred = run_model(sess, spec, np.stack([images[p] for p in paths]))
    readings = zip(paths, pred["age"], pred["gender_prob"], strict=True)
    reading = {p: (float(a), float(g)) for p, a, g in readings}
    return {(clip, tid): reading[face] for clip, tid, face in keys}


def photo_report(results, readings: dict) -> tuple[dict, list[str]]:
    """Photo against video over the matched visitors: totals, the paired test, and the visitors
    right on their photo but wrong on video."""
    rows = []
    for r in results:
        for p in r.pairs:
            if (r.clip, p.truth_id) not in readings:
                continue  # no age or gender to read on the photo
            age, prob = readings[(r.clip, p.truth_id)]
            photo_gender = "female" if prob >= 0.5 else "male"  # as pipelines.visitors
            rows.append(dict(clip=r.clip, truth_id=p.truth_id, true_age=p.true_age,
                             true_gender=p.true_gender, photo_age=age, photo_female=prob,
                             photo_gender=photo_gender, video_age=p.pred_age,
                             video_gender=p.pred_gender))  # fmt: skip
    paired = paired_comparison(
        [abs(v["video_age"] - v["true_age"]) for v in rows],
        [abs(v["photo_age"] - v["true_age"]) for v in rows],
        [v["video_gender"] == v["true_gender"] for v in rows],
        [v["photo_gender"] == v["true_gender"] for v in rows],
    )
    lost = [v for v in rows if v["photo_gender"] == v["true_gender"] != v["video_gender"]]
    text = ["", format_comparison(paired, "video", "photos", "visitors")]
    if lost:
        text.append("right on the photo, wrong on video:")
        text += [
            f"  {v['clip']} visitor {v['truth_id']}: {v['true_gender']} {v['true_age']:.0f}; "
            f"photo {v['photo_age']:.1f}, P(female) {v['photo_female']:.2f}; "
            f"video {v['video_gender']} {v['video_age']:.1f}"
            for v in lost
        ]
    return {"paired": paired, "visitors": rows}, text


def score_runs(args) -> tuple[str, dict]:
    if args.photos and not args.faces:
        raise SimulationError("--photos needs --faces, the face source the clips were drawn from")
    truths = [load_truth(t) for t in args.truth]
    results = [score(t, args.output, min_iou=args.min_iou) for t in truths]
    totals = pool(results)
    data = dict(totals, clips=[r.to_dict() for r in results])
    if len(results) == 1:
        text = [results[0].table()]
    else:
        text = [f"== {r.clip} ==\n{r.table()}\n" for r in results]
        text.append(pooled_line(totals, f"all {len(results)} clips"))
    if args.against:
        other = [score(t, args.against, min_iou=args.min_iou) for t in truths]
        paired = compare(results, other)
        data["against"] = {"output": args.against, "totals": pool(other), "paired": paired}
        text.append("")
        text.append(pooled_line(data["against"]["totals"], f"against {args.against}"))
        text += paired_text(paired, totals["labelled"], args.output, args.against)
    if args.photos:
        readings = photo_readings(truths, results, args.photos, args.faces, args.threads)
        data["photos"], lines = photo_report(results, readings)
        data["photos"]["model"] = args.photos
        text += lines
    return "\n".join(text), data


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when scored; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_score, argv)


def _score(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    one_line_warnings()
    setup_logging()  # Beam's import-time notes (pipelines modules) filtered as in every job
    try:
        text, data = score_runs(args)
    except SimulationError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        try:
            with open(args.json, "w") as fh:
                json.dump(data, fh, indent=1)
                fh.write("\n")
        except OSError as exc:
            raise UserError(f"cannot write {args.json}: {exc.strerror}") from None
    with reader_may_leave():
        print(text)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
