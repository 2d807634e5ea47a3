"""Score an analysis output against a synthetic clip's ground truth.

The analysis' visitors of the clip are found through :func:`schemas.views.connect` (never raw
globs): rows whose ``video`` path ends in the truth's ``clip.file`` name (``video`` holds the
input path, local or ``gs://...``). Predicted and true visitors are matched one to one, greedily
by the temporal IoU of ``[start_s, end_s]`` against ``[enter_s, leave_s]`` (highest first, ties
by earlier start), keeping pairs with IoU >= ``min_iou``. Reported:

- visitor count error: predicted - true, and its absolute value;
- matched pairs, true visitors left unmatched (missed), predicted left unmatched (spurious, or a
  person split into several tracks);
- over the matched pairs: gender accuracy, age MAE and mean signed age error (bias), mean IoU,
  each over the visitors whose truth has that label (a face from an emotion or mask set has no
  age or gender);
- mask accuracy and emotion accuracy over the matched visitors whose truth has that label and
  whom the analysis read: the ``visitors`` table's ``mask`` and ``emotion`` columns (class names),
  where it has them. An analysis without them (an older pipeline, a model without those heads)
  scores the rest, with a note;
- fragments: predicted visitors left unmatched that lie within a matched true visit (the
  tracker split one visit into several rows);
- people: true distinct persons (the truth's ``person``, else each visit its own) against the
  distinct ``person_id``s of the analysis (a row without one counts as its own person), where
  the analysis has person ids (``identity.enabled``).

Several clips pool into one set of totals (:func:`pool`), and two analyses of the same clips (two
models, say) compare visitor by visitor (:func:`compare`), which is how models are chosen on video
(docs/experiments/2026-11-25-choosing-on-video.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from model.metrics import paired_by_key, paired_classes
from schemas.model_file import CLASS_NAMES
from schemas.views import TablesError, connect, fetch
from simulation import SimulationError
from simulation.score_text import HEADS, head_readings, result_table


@dataclass
class Pair:
    truth_id: int
    track_id: int
    iou: float
    true_age: float | None  # None: the face's set has no age (an emotion or mask set)
    pred_age: float
    true_gender: str | None
    pred_gender: str
    true_mask: str | None = None  # class names; None where the truth has no such label
    pred_mask: str | None = None  # None where the analysis has no such reading
    true_emotion: str | None = None
    pred_emotion: str | None = None


@dataclass
class ScoreResult:
    clip: str
    video: str | None  # the analysis' input path for the clip
    true_visitors: int
    predicted_visitors: int
    count_error: int  # predicted - true
    abs_count_error: int
    matched: int
    unmatched_true: int
    unmatched_predicted: int
    gender_accuracy: float | None  # over the gender_n matched pairs with a true gender
    gender_n: int
    age_mae: float | None  # over the age_n matched pairs with a true age
    age_bias: float | None  # mean(predicted - true)
    age_n: int
    mean_iou: float | None
    mask_accuracy: float | None  # over the mask_n matched pairs with a true and a read status
    mask_n: int
    emotion_accuracy: float | None
    emotion_n: int
    pairs: list[Pair] = field(default_factory=list)
    fragments: int = 0  # predicted rows that are a second row of a matched true visit
    true_people: int | None = None
    predicted_people: int | None = None  # None: the analysis has no person ids
    fingerprint: str | None = None  # the analysed file's content fingerprint (videos table)
    model_version: str | None = None  # the model the analysis used
    labelled: list[str] = field(default_factory=list)  # HEADS some true visitor is labelled for
    notes: list[str] = field(default_factory=list)  # e.g. no mask readings in the analysis

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        return result_table(self)


def load_truth(path: str | Path) -> dict:
    """Read a truth file, checked for what scoring needs (``clip.file``; each visitor's id, age
    and gender, null where unknown; ``mask`` and ``emotion``, where given, class names)."""
    p = Path(path)
    try:
        truth = json.loads(p.read_text())
    except OSError as exc:
        raise SimulationError(f"cannot read truth {p}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SimulationError(f"{p} is not JSON: {exc}") from None
    if not isinstance(truth, dict) or "clip" not in truth or "visitors" not in truth:
        raise SimulationError(f"{p} is not a truth file (needs 'clip' and 'visitors')")
    if not isinstance(truth["clip"], dict) or not isinstance(truth["clip"].get("file"), str):
        raise SimulationError(f"{p} is not a truth file (needs clip.file, the clip's file name)")
    needed = ("id", "age", "gender")
    for v in truth["visitors"] if isinstance(truth["visitors"], list) else [None]:
        if not isinstance(v, dict) or any(k not in v for k in needed):
            raise SimulationError(f"{p}: every visitor needs {', '.join(needed)} (null: unknown)")
        for head in HEADS:
            if v.get(head) is not None and v[head] not in CLASS_NAMES[head]:
                raise SimulationError(
                    f"{p}: visitor {v['id']} has {head} {v[head]!r}, not one of "
                    f"{', '.join(CLASS_NAMES[head])}"
                )
    return truth


def interval_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0])
    union = max(a[1], b[1]) - min(a[0], b[0])
    if inter <= 0 or union <= 0:
        return 0.0
    return inter / union


def match(truth: list[dict], predicted: list[dict], min_iou: float) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by interval IoU: ``(truth index, predicted index, iou)``."""
    cands = []
    for i, t in enumerate(truth):
        for j, p in enumerate(predicted):
            iou = interval_iou((t["enter_s"], t["leave_s"]), (p["start_s"], p["end_s"]))
            if iou >= min_iou and iou > 0:
                cands.append((-iou, t["enter_s"], p["start_s"], i, j))
    cands.sort()
    used_t, used_p, pairs = set(), set(), []
    for neg_iou, _, _, i, j in cands:
        if i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
            pairs.append((i, j, -neg_iou))
    return sorted(pairs)


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1].rsplit("\\", 1)[-1]


def predicted_visitors(output: str | Path, clip_file: str) -> tuple[dict, list[dict]]:
    """The analysis of ``clip_file`` (its videos row: ``video``, ``fingerprint``,
    ``model_version``) and its visitor rows, via the DuckDB views: ``mask`` and ``emotion``
    None where the table lacks those columns (written before the pipeline had them)."""
    if not Path(output).is_dir():
        raise SimulationError(f"analysis output folder not found: {output}")
    try:
        con = connect(str(output))
        videos = fetch(con, "SELECT video, status, error, fingerprint, model_version FROM videos")
    except TablesError as e:
        raise SimulationError(f"cannot read the tables in {output}: {e}") from None
    hits = [row for row in videos if _basename(row[0]) == clip_file]
    if not hits:
        raise SimulationError(f"{clip_file} is not among the videos analysed in {output}")
    if len({row[0] for row in hits}) > 1:
        names = ", ".join(sorted({row[0] for row in hits}))
        raise SimulationError(f"{clip_file} matches several analysed videos: {names}")
    video, status, error, fingerprint, model_version = hits[0]
    if status != "ok":
        raise SimulationError(f"the analysis of {video} failed: {error or status}")
    try:
        have = {row[0] for row in fetch(con, "DESCRIBE visitors")}
        optional = (*HEADS, "person_id")
        cols = (
            "track_id",
            "start_s",
            "end_s",
            "age",
            "gender",
            *(h for h in optional if h in have),
        )
        sql = f"SELECT {', '.join(cols)} FROM visitors WHERE video = ? ORDER BY start_s, track_id"
        rows = fetch(con, sql, [video])
    except TablesError as e:
        raise SimulationError(f"cannot read the tables in {output}: {e}") from None
    analysed = {"video": video, "fingerprint": fingerprint, "model_version": model_version}
    empty = dict.fromkeys((*HEADS, "person_id"))
    return analysed, [{**empty, **dict(zip(cols, r, strict=True))} for r in rows]


def _mean(xs: list) -> float | None:
    return sum(xs) / len(xs) if xs else None


def pair_means(pairs: list[Pair]) -> dict:
    """Over matched pairs, each figure over the pairs whose truth has its label: gender
    accuracy, age MAE and bias, and per head in HEADS its accuracy over the pairs the analysis
    read too; with the number of pairs behind each, and the mean IoU (None when none)."""
    gender = [p for p in pairs if p.true_gender is not None]
    aged = [p for p in pairs if p.true_age is not None]
    out = {
        "gender_accuracy": _mean([p.true_gender == p.pred_gender for p in gender]),
        "gender_n": len(gender),
        "age_mae": _mean([abs(p.pred_age - p.true_age) for p in aged]),
        "age_bias": _mean([p.pred_age - p.true_age for p in aged]),
        "age_n": len(aged),
        "mean_iou": _mean([p.iou for p in pairs]),
    }
    for head in HEADS:
        right = [t == r for t, r in head_readings(pairs, head)]
        out[f"{head}_accuracy"], out[f"{head}_n"] = _mean(right), len(right)
    return out


def _pair(t: dict, p: dict, iou: float) -> Pair:
    """A matched true visitor ``t`` and predicted visitor ``p``."""
    return Pair(
        truth_id=int(t["id"]),
        track_id=int(p["track_id"]),
        iou=round(iou, 4),
        true_age=None if t["age"] is None else float(t["age"]),
        pred_age=float(p["age"]),
        true_gender=None if t["gender"] is None else str(t["gender"]),
        pred_gender=str(p["gender"]),
        **{f"{side}_{h}": v.get(h) for h in HEADS for side, v in (("true", t), ("pred", p))},
    )


def score(truth: dict | str | Path, output: str | Path, min_iou: float = 0.1) -> ScoreResult:
    """Compare the analysis in ``output`` with ``truth`` (a dict or a truth JSON path)."""
    if not isinstance(truth, dict):
        truth = load_truth(truth)
    clip = truth["clip"]["file"]
    true = [v for v in truth["visitors"] if v.get("enter_s") is not None]
    analysed, pred = predicted_visitors(output, clip)
    matching = match(true, pred, min_iou)
    out_pairs = [_pair(true[i], pred[j], iou) for i, j, iou in matching]
    labelled = [h for h in HEADS if any(v.get(h) is not None for v in true)]
    read = {h for h in HEADS if any(v[h] is not None for v in pred)}
    # with no visitor found there is nothing the analysis could have read: the count says it
    notes = [f"no {h} predictions in the analysis" for h in labelled if pred and h not in read]
    n = len(out_pairs)
    return ScoreResult(
        clip=clip,
        video=analysed["video"],
        true_visitors=len(true),
        predicted_visitors=len(pred),
        count_error=len(pred) - len(true),
        abs_count_error=abs(len(pred) - len(true)),
        matched=n,
        unmatched_true=len(true) - n,
        unmatched_predicted=len(pred) - n,
        **pair_means(out_pairs),
        pairs=out_pairs,
        fragments=count_fragments(true, pred, matching),
        true_people=len({v.get("person", v["id"]) for v in true}),
        predicted_people=count_people(pred),
        fingerprint=analysed["fingerprint"],
        model_version=analysed["model_version"],
        labelled=labelled,
        notes=notes,
    )


def count_fragments(true: list[dict], pred: list[dict], matching) -> int:
    """Unmatched predicted visitors whose middle falls within a matched true visit (from its
    first to its last moment in frame): the pieces of a visit the tracker broke apart."""
    matched_true = {i for i, _, _ in matching}
    matched_pred = {j for _, j, _ in matching}
    n = 0
    for j, p in enumerate(pred):
        if j in matched_pred:
            continue
        mid = (p["start_s"] + p["end_s"]) / 2
        n += any(
            (t.get("appear_s") or t["enter_s"]) <= mid <= (t.get("disappear_s") or t["leave_s"])
            for i, t in enumerate(true)
            if i in matched_true
        )
    return n


def count_people(pred: list[dict]) -> int | None:
    """Distinct people among the predicted visitors by ``person_id`` (a row without one is its
    own person); None when no row has one."""
    ids = [p.get("person_id") for p in pred]
    if all(i is None for i in ids):
        return None
    return len({i for i in ids if i is not None}) + sum(i is None for i in ids)


def pool(results: list[ScoreResult]) -> dict:
    """Totals over several clips' scores: counts summed (``abs_count_error`` is the sum of each
    clip's absolute count error), accuracy and errors over all matched pairs (so a clip weighs
    by its visitors), the right calls per label (``gender_right``, ``mask_right``, ...), the
    heads any clip's truth labels, the clips' notes and ``n_clips``. Each clip must appear
    once."""
    clips = [r.clip for r in results]
    if len(set(clips)) < len(clips):
        dup = next(c for c in clips if clips.count(c) > 1)
        raise SimulationError(f"{dup} is given more than once: pass each clip's truth once")
    pairs = [p for r in results for p in r.pairs]
    n = len(pairs)
    true = sum(r.true_visitors for r in results)
    predicted = sum(r.predicted_visitors for r in results)
    return {
        "n_clips": len(results),
        "true_visitors": true,
        "predicted_visitors": predicted,
        "count_error": predicted - true,
        "abs_count_error": sum(r.abs_count_error for r in results),
        "matched": n,
        "unmatched_true": true - n,
        "unmatched_predicted": predicted - n,
        "fragments": sum(r.fragments for r in results),
        "true_people": sum(r.true_people or 0 for r in results),
        "predicted_people": (
            None
            if any(r.predicted_people is None for r in results)
            else sum(r.predicted_people for r in results)
        ),
        "gender_right": sum(p.true_gender == p.pred_gender for p in pairs),
        **{f"{h}_right": sum(t == r for t, r in head_readings(pairs, h)) for h in HEADS},
        **pair_means(pairs),
        "labelled": [h for h in HEADS if any(h in r.labelled for r in results)],
        "notes": list(dict.fromkeys(note for r in results for note in r.notes)),
    }


def compare(a: list[ScoreResult], b: list[ScoreResult]) -> dict:
    """Two analyses of the same clips, visitor by visitor, over the true visitors both matched:
    :func:`model.metrics.paired_comparison` of their age errors and gender calls (the visitors
    with an age), and per head in HEADS :func:`model.metrics.paired_classes` of its calls (the
    visitors with that label whom both analyses read)."""
    for ra, rb in zip(a, b, strict=True):
        if ra.fingerprint != rb.fingerprint:
            raise SimulationError(
                f"the two analyses read different files named {ra.clip} ({ra.video} and "
                f"{rb.video}): compare analyses of the same clips"
            )

    def by_visitor(results):
        return {
            (r.clip, p.truth_id): (
                abs(p.pred_age - p.true_age),
                p.pred_gender == p.true_gender,
                p.true_gender is not None,
            )
            for r in results
            for p in r.pairs
            if p.true_age is not None
        }

    def right(results, head):
        return {
            (r.clip, p.truth_id): t == c
            for r in results
            for p in r.pairs
            for t, c in head_readings([p], head)
        }

    out = paired_by_key(by_visitor(a), by_visitor(b))
    ka = {(r.clip, p.truth_id) for r in a for p in r.pairs}
    kb = {(r.clip, p.truth_id) for r in b for p in r.pairs}
    out["matched_only_a"], out["matched_only_b"] = len(ka - kb), len(kb - ka)
    for head in HEADS:
        ra, rb = right(a, head), right(b, head)
        common = sorted(ra.keys() & rb.keys())
        out[head] = paired_classes([ra[k] for k in common], [rb[k] for k in common])
    return out
