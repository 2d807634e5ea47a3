"""Score an analysis output against a synthetic clip's ground truth.

The analysis' visitors of the clip are found through :func:`schemas.views.connect` (never raw
globs): rows whose ``video`` path ends in the truth's ``clip.file`` name (``video`` holds the
input path, local or ``gs://...``). Predicted and true visitors are matched one to one, greedily
by the temporal IoU of ``[start_s, end_s]`` against ``[enter_s, leave_s]`` (highest first, ties
by earlier start), keeping pairs with IoU >= ``min_iou``. Reported:

- visitor count error: predicted - true, and its absolute value;
- matched pairs, true visitors left unmatched (missed), predicted left unmatched (spurious, or a
  person split into several tracks);
- over the matched pairs: gender accuracy, age MAE and mean signed age error (bias), mean IoU.

Several clips pool into one set of totals (:func:`pool`), and two analyses of the same clips (two
models, say) compare visitor by visitor (:func:`compare`), which is how models are chosen on video
(docs/experiments/2026-11-25-choosing-on-video.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from model.metrics import paired_by_key
from schemas.views import TablesError, connect, fetch
from simulation import SimulationError


@dataclass
class Pair:
    truth_id: int
    track_id: int
    iou: float
    true_age: float
    pred_age: float
    true_gender: str
    pred_gender: str


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
    gender_accuracy: float | None  # over matched pairs; None when nothing matched
    age_mae: float | None
    age_bias: float | None  # mean(predicted - true)
    mean_iou: float | None
    pairs: list[Pair] = field(default_factory=list)
    fingerprint: str | None = None  # the analysed file's content fingerprint (videos table)
    model_version: str | None = None  # the model the analysis used

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        def f(v, fmt):
            return "-" if v is None else format(v, fmt)

        rows = [
            ("clip", self.clip),
            ("video", self.video or "-"),
            ("visitors true / predicted", f"{self.true_visitors} / {self.predicted_visitors}"),
            ("count error (pred - true)", f"{self.count_error:+d} (abs {self.abs_count_error})"),
            ("matched", str(self.matched)),
            ("unmatched true (missed)", str(self.unmatched_true)),
            ("unmatched predicted", str(self.unmatched_predicted)),
            ("gender accuracy", f(self.gender_accuracy, ".3f")),
            ("age MAE (years)", f(self.age_mae, ".2f")),
            ("age bias (years)", f(self.age_bias, "+.2f")),
            ("mean temporal IoU", f(self.mean_iou, ".3f")),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        if self.pairs:
            lines.append("")
            lines.append(" truth  track    iou  age true/pred  gender true/pred")
            for p in self.pairs:
                lines.append(
                    f"{p.truth_id:>6}  {p.track_id:>5}  {p.iou:5.2f}  "
                    f"{p.true_age:>8.0f} / {p.pred_age:<5.1f}  {p.true_gender:>6} / {p.pred_gender}"
                )
        return "\n".join(lines)


def load_truth(path: str | Path) -> dict:
    """Read a truth file, checked for what scoring needs (``clip.file``; each visitor's id, age
    and gender)."""
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
            raise SimulationError(f"{p}: every visitor needs {', '.join(needed)}")
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
    ``model_version``) and its visitor rows, via the DuckDB views."""
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
    sql = (
        "SELECT track_id, start_s, end_s, age, gender FROM visitors WHERE video = ? "
        "ORDER BY start_s, track_id"
    )
    try:
        rows = fetch(con, sql, [video])
    except TablesError as e:
        raise SimulationError(f"cannot read the tables in {output}: {e}") from None
    cols = ("track_id", "start_s", "end_s", "age", "gender")
    analysed = {"video": video, "fingerprint": fingerprint, "model_version": model_version}
    return analysed, [dict(zip(cols, r, strict=True)) for r in rows]


def pair_means(pairs: list[Pair]) -> dict:
    """Gender accuracy, age MAE, age bias and mean IoU over matched pairs (None when none)."""
    n = len(pairs)

    def mean(xs):
        return sum(xs) / n if n else None

    return {
        "gender_accuracy": mean([p.true_gender == p.pred_gender for p in pairs]),
        "age_mae": mean([abs(p.pred_age - p.true_age) for p in pairs]),
        "age_bias": mean([p.pred_age - p.true_age for p in pairs]),
        "mean_iou": mean([p.iou for p in pairs]),
    }


def score(truth: dict | str | Path, output: str | Path, min_iou: float = 0.1) -> ScoreResult:
    """Compare the analysis in ``output`` with ``truth`` (a dict or a truth JSON path)."""
    if not isinstance(truth, dict):
        truth = load_truth(truth)
    clip = truth["clip"]["file"]
    true = [v for v in truth["visitors"] if v.get("enter_s") is not None]
    analysed, pred = predicted_visitors(output, clip)
    pairs = match(true, pred, min_iou)
    out_pairs = [
        Pair(
            truth_id=int(true[i]["id"]),
            track_id=int(pred[j]["track_id"]),
            iou=round(iou, 4),
            true_age=float(true[i]["age"]),
            pred_age=float(pred[j]["age"]),
            true_gender=str(true[i]["gender"]),
            pred_gender=str(pred[j]["gender"]),
        )
        for i, j, iou in pairs
    ]
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
        fingerprint=analysed["fingerprint"],
        model_version=analysed["model_version"],
    )


def pool(results: list[ScoreResult]) -> dict:
    """Totals over several clips' scores: counts summed (``abs_count_error`` is the sum of each
    clip's absolute count error), accuracy and errors over all matched pairs (so a clip weighs
    by its visitors), ``gender_right`` and ``n_clips``. Each clip must appear once."""
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
        "gender_right": sum(p.true_gender == p.pred_gender for p in pairs),
        **pair_means(pairs),
    }


def pooled_line(p: dict, label: str) -> str:
    """One line of :func:`pool` output."""
    if not p["matched"]:
        return f"{label}: {p['true_visitors']} true visitors, none matched"
    return (
        f"{label}: visitors {p['true_visitors']} true / {p['predicted_visitors']} predicted, "
        f"matched {p['matched']}, gender {p['gender_right']}/{p['matched']} "
        f"({p['gender_accuracy']:.3f}), age MAE {p['age_mae']:.2f} (bias {p['age_bias']:+.2f})"
    )


def compare(a: list[ScoreResult], b: list[ScoreResult]) -> dict:
    """Two analyses of the same clips, visitor by visitor: the true visitors both matched, with
    :func:`model.metrics.paired_comparison` of their age errors and gender calls."""
    for ra, rb in zip(a, b, strict=True):
        if ra.fingerprint != rb.fingerprint:
            raise SimulationError(
                f"the two analyses read different files named {ra.clip} ({ra.video} and "
                f"{rb.video}): compare analyses of the same clips"
            )

    def by_visitor(results):
        return {
            (r.clip, p.truth_id): (abs(p.pred_age - p.true_age), p.pred_gender == p.true_gender)
            for r in results
            for p in r.pairs
        }

    va, vb = by_visitor(a), by_visitor(b)
    out = paired_by_key(va, vb)
    out["matched_only_a"] = len(va.keys() - vb.keys())
    out["matched_only_b"] = len(vb.keys() - va.keys())
    return out
