"""The scores of :mod:`simulation.scoring` as text: one clip's table, a line of totals, and the
paired comparison of two analyses.

A clip whose truth has no mask or emotion labels (UTKFace alone) reads as it always did: the
lines of a head appear only where some true visitor is labelled for it.
"""

from __future__ import annotations

from model.metrics import format_comparison

# The classification heads scored where the truth labels them (schemas.model_file.CLASS_NAMES).
HEADS = ("mask", "emotion")


def head_readings(pairs, head: str) -> list[tuple[str, str]]:
    """``(true, read)`` class names of ``head`` over the matched pairs that have both."""
    both = [(getattr(p, f"true_{head}"), getattr(p, f"pred_{head}")) for p in pairs]
    return [(t, r) for t, r in both if t is not None and r is not None]


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _accuracy(acc: float | None, right: int, n: int) -> str:
    return "-" if acc is None else f"{acc:.3f} ({right}/{n})"


def result_table(r) -> str:
    """A :class:`simulation.scoring.ScoreResult` as a table, then its matched pairs."""
    gender = _fmt(r.gender_accuracy, ".3f")
    if r.gender_n < r.matched and r.gender_accuracy is not None:
        gender += f" (of {r.gender_n} with a gender)"
    rows = [
        ("clip", r.clip),
        ("video", r.video or "-"),
        ("visitors true / predicted", f"{r.true_visitors} / {r.predicted_visitors}"),
        ("count error (pred - true)", f"{r.count_error:+d} (abs {r.abs_count_error})"),
        ("matched", str(r.matched)),
        ("unmatched true (missed)", str(r.unmatched_true)),
        ("unmatched predicted", str(r.unmatched_predicted)),
        ("fragments", str(r.fragments)),
        ("gender accuracy", gender),
        ("age MAE (years)", _fmt(r.age_mae, ".2f")),
        ("age bias (years)", _fmt(r.age_bias, "+.2f")),
        ("mean temporal IoU", _fmt(r.mean_iou, ".3f")),
    ]
    for head in r.labelled:
        acc, n = getattr(r, f"{head}_accuracy"), getattr(r, f"{head}_n")
        right = sum(t == c for t, c in head_readings(r.pairs, head))
        note = next((note for note in r.notes if f" {head} " in note), None)
        rows.append((f"{head} accuracy", f"- ({note})" if note else _accuracy(acc, right, n)))
    if r.predicted_people is not None:
        error = r.predicted_people - r.true_people
        rows.append(
            ("people true / predicted", f"{r.true_people} / {r.predicted_people} ({error:+d})")
        )
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if r.pairs:
        lines += ["", _pair_header(r.labelled)] + [_pair_line(p, r.labelled) for p in r.pairs]
    return "\n".join(lines)


def _pair_header(heads: list[str]) -> str:
    extra = "".join(f"  {h} true/pred" for h in heads)
    return " truth  track    iou  age true/pred  gender true/pred" + extra


def _pair_line(p, heads: list[str]) -> str:
    age = "       -" if p.true_age is None else f"{p.true_age:>8.0f}"
    line = (
        f"{p.truth_id:>6}  {p.track_id:>5}  {p.iou:5.2f}  "
        f"{age} / {p.pred_age:<5.1f}  {p.true_gender or '-':>6} / {p.pred_gender}"
    )
    for head in heads:
        true, read = getattr(p, f"true_{head}"), getattr(p, f"pred_{head}")
        line += f"  {true or '-'} / {read or '-'}"
    return line


def pooled_line(p: dict, label: str) -> str:
    """One line of :func:`simulation.scoring.pool` output."""
    if not p["matched"]:
        return f"{label}: {p['true_visitors']} true visitors, none matched"
    parts = [
        f"{label}: visitors {p['true_visitors']} true / {p['predicted_visitors']} predicted, "
        f"matched {p['matched']}"
    ]
    if p["predicted_people"] is not None:
        parts.append(f"people {p['true_people']} true / {p['predicted_people']} predicted")
    if p["gender_n"]:
        parts.append(f"gender {p['gender_right']}/{p['gender_n']} ({p['gender_accuracy']:.3f})")
    if p["age_n"]:
        parts.append(f"age MAE {p['age_mae']:.2f} (bias {p['age_bias']:+.2f})")
    for head in HEADS:
        if p[f"{head}_n"]:
            parts.append(
                f"{head} {p[f'{head}_right']}/{p[f'{head}_n']} ({p[f'{head}_accuracy']:.3f})"
            )
    parts.append(f"fragments {p['fragments']}")
    return ", ".join(parts + p["notes"])


def paired_text(c: dict, heads: list[str], name_a: str, name_b: str) -> list[str]:
    """Lines of :func:`simulation.scoring.compare` output: age and gender as
    ``model.metrics.format_comparison`` gives them, then each head of ``heads`` (those the
    truth labels)."""
    unit = "visitors" if not heads else "visitors with an age and gender"
    lines = [format_comparison(c, name_a, name_b, unit)]
    for head in heads:
        h = c[head]
        if not h["n"]:
            lines.append(f"  {head}: no labelled visitor read by both analyses")
            continue
        lines.append(
            f"  {head + ' right':<14} {h['right_a']} against {h['right_b']} of {h['n']}: "
            f"right only with {name_a} {h['only_a']}, only with {name_b} {h['only_b']}, "
            f"exact McNemar p = {h['p']:.3f}"
        )
    if c["matched_only_a"] or c["matched_only_b"]:
        lines.append(
            f"  matched in one analysis only (left out above): {c['matched_only_a']} in "
            f"{name_a}, {c['matched_only_b']} in {name_b}"
        )
    return lines
