"""Metrics in plain numpy (no torch) for training logs and ``jobs.evaluate``: age, gender, the
classification heads (mask status, emotion), and paired comparisons of two models."""

from __future__ import annotations

import math

import numpy as np

TOLERANCES = (1, 3, 5, 10, 15)
BANDS = tuple((lo, lo + 9) for lo in range(0, 70, 10)) + ((70, None),)
RACE_NAMES = ("white", "black", "asian", "indian", "other")


def band_name(lo: int, hi: int | None) -> str:
    return f"{lo}-{hi}" if hi is not None else f"{lo}+"


def age_metrics(true_age, pred_age) -> dict:
    """MAE, exact accuracy (rounded prediction == true year) and accuracy within +-k years."""
    t = np.asarray(true_age, np.float64)
    p = np.asarray(pred_age, np.float64)
    if t.size == 0:
        return {"n": 0}
    err = np.abs(p - t)
    out = {"n": int(t.size), "mae": float(err.mean())}
    out["exact_acc"] = float((np.rint(p) == t).mean())
    for k in TOLERANCES:
        out[f"within_{k}"] = float((err <= k).mean())
    return out


def confusion_matrix(true, pred, num_classes: int = 2) -> np.ndarray:
    """[true, pred] counts."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
    return m


def gender_metrics(true_gender, prob_female, threshold: float = 0.5) -> dict:
    t = np.asarray(true_gender, np.int64)
    known = t >= 0
    t = t[known]
    pred = (np.asarray(prob_female, np.float64)[known] >= threshold).astype(np.int64)
    if t.size == 0:
        return {"gender_n": 0}
    return {
        "gender_n": int(t.size),
        "gender_acc": float((pred == t).mean()),
        "gender_confusion": confusion_matrix(t, pred, 2).tolist(),
    }


def per_band_mae(true_age, pred_age, true_gender=None, prob_female=None) -> dict[str, dict]:
    """Per true-age band: MAE, bias (mean signed error: regression to the mean shows as positive
    bias on the young and negative on the old) and, given genders, gender accuracy."""
    t = np.asarray(true_age, np.float64)
    signed = np.asarray(pred_age, np.float64) - t
    out = {}
    for lo, hi in BANDS:
        sel = (t >= lo) & (t <= hi if hi is not None else True)
        n = int(sel.sum())
        row = {"n": n, "mae": None, "bias": None}
        if n:
            row.update(mae=float(np.abs(signed[sel]).mean()), bias=float(signed[sel].mean()))
        if true_gender is not None and prob_female is not None:
            g = gender_metrics(np.asarray(true_gender)[sel], np.asarray(prob_female)[sel])
            row["gender_acc"] = g.get("gender_acc")
        out[band_name(lo, hi)] = row
    return out


def per_group_mae(true_age, pred_age, groups, names=RACE_NAMES) -> dict[str, dict]:
    t = np.asarray(true_age, np.float64)
    err = np.abs(np.asarray(pred_age, np.float64) - t)
    g = np.asarray(groups, np.int64)
    out = {}
    for i, name in enumerate(names):
        sel = g == i
        n = int(sel.sum())
        if n:
            out[name] = {"n": n, "mae": float(err[sel].mean())}
    return out


def evaluate_predictions(true_age, pred_age, true_gender, prob_female, race=None) -> dict:
    """Every metric ``jobs.evaluate`` reports, as one JSON-able dict."""
    out = age_metrics(true_age, pred_age)
    out.update(gender_metrics(true_gender, prob_female))
    out["mae_per_band"] = per_band_mae(true_age, pred_age, true_gender, prob_female)
    if race is not None and (np.asarray(race) >= 0).any():
        out["mae_per_race"] = per_group_mae(true_age, pred_age, race)
    return out


def format_report(m: dict) -> str:
    """Human-readable multi-line report of ``evaluate_predictions`` output."""
    lines = [f"n                {m['n']}"]
    if m["n"]:
        lines.append(f"age MAE          {m['mae']:.3f} years")
        lines.append(f"exact acc        {100 * m['exact_acc']:.2f}%")
        for k in TOLERANCES:
            lines.append(f"within +-{k:<2}     {100 * m[f'within_{k}']:.2f}%")
    if m.get("gender_n"):
        lines.append(f"gender acc       {100 * m['gender_acc']:.2f}%  (n={m['gender_n']})")
        c = m["gender_confusion"]
        lines.append("gender confusion (rows true, cols predicted)")
        lines.append("                 male  female")
        lines.append(f"  male         {c[0][0]:7d} {c[0][1]:7d}")
        lines.append(f"  female       {c[1][0]:7d} {c[1][1]:7d}")
    lines.append("per age band    MAE    bias  gender")
    for band, v in m.get("mae_per_band", {}).items():
        mae = "   -  " if v["mae"] is None else f"{v['mae']:6.2f}"
        bias = "   -  " if v.get("bias") is None else f"{v['bias']:+6.2f}"
        acc = v.get("gender_acc")
        gender = "    -  " if acc is None else f"{100 * acc:6.1f}%"
        lines.append(f"  {band:<8}   {mae}  {bias} {gender}  (n={v['n']})")
    if "mae_per_race" in m:
        lines.append("MAE per race group")
        for race, v in m["mae_per_race"].items():
            lines.append(f"  {race:<8} {v['mae']:6.2f}  (n={v['n']})")
    return "\n".join(lines)


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test: how likely so lopsided a split of the discordant pairs
    (right with one model only) is when neither model is better (binomial, p = 1/2)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, j) for j in range(k + 1)) / 2**n)


def sign_flip_p(diff, draws: int = 100_000, seed: int = 0) -> float:
    """Two-sided paired permutation test of mean(diff) = 0: each paired difference's sign is
    flipped at random ``draws`` times (seeded, so the figure reruns exactly); p = (hits + 1) /
    (draws + 1), never 0. Makes no normality assumption, which matters for age errors."""
    d = np.asarray(diff, np.float64)
    if d.size == 0 or not np.any(d):
        return 1.0
    observed = abs(d.sum()) * (1 - 1e-9)  # a draw that ties the observed sum counts as a hit
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // d.size)  # about 4 MB of signs at a time
    hits = 0
    for start in range(0, draws, chunk):
        rows = min(chunk, draws - start)
        signs = rng.integers(0, 2, size=(rows, d.size), dtype=np.int8) * 2 - 1
        hits += int((np.abs(signs @ d) >= observed).sum())
    return (hits + 1) / (draws + 1)


def paired_comparison(err_a, err_b, right_a, right_b, gender_known=None) -> dict:
    """Compare two models on the same items: absolute age errors ``err_*`` and gender-right flags
    ``right_*``, item by item; ``gender_known`` (default all) masks the items whose gender is
    labelled. Age: mean difference (a - b) over all ``n`` items with its standard error and the
    sign-flip p; gender, over the ``gender_n`` labelled items: right with one model only and the
    exact McNemar p."""
    ea, eb = np.asarray(err_a, np.float64), np.asarray(err_b, np.float64)
    ra, rb = np.asarray(right_a, bool), np.asarray(right_b, bool)
    known = np.ones(ea.shape, bool) if gender_known is None else np.asarray(gender_known, bool)
    if not (ea.shape == eb.shape == ra.shape == rb.shape == known.shape) or ea.ndim != 1:
        raise ValueError("paired_comparison needs 1-D arrays over the same items")
    n = int(ea.size)
    d = ea - eb
    ra, rb = ra[known], rb[known]
    only_a, only_b = int((ra & ~rb).sum()), int((rb & ~ra).sum())
    return {
        "n": n,
        "mae_a": float(ea.mean()) if n else None,
        "mae_b": float(eb.mean()) if n else None,
        "mae_diff": float(d.mean()) if n else None,
        "mae_diff_se": float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
        "mae_p": sign_flip_p(d),
        "gender_n": int(known.sum()),
        "gender_right_a": int(ra.sum()),
        "gender_right_b": int(rb.sum()),
        "gender_only_a": only_a,
        "gender_only_b": only_b,
        "gender_p": mcnemar_exact_p(only_a, only_b),
    }


def paired_by_key(a: dict, b: dict) -> dict:
    """:func:`paired_comparison` over the keys two models share, from ``{key: (age error,
    gender right[, gender known])}`` per model (the known flag, default True, is taken from
    ``a``)."""
    common = sorted(a.keys() & b.keys())
    return paired_comparison(
        [a[k][0] for k in common],
        [b[k][0] for k in common],
        [a[k][1] for k in common],
        [b[k][1] for k in common],
        [a[k][2] if len(a[k]) > 2 else True for k in common],
    )


def format_comparison(c: dict, name_a: str = "a", name_b: str = "b", unit: str = "faces") -> str:
    """Human-readable lines of ``paired_comparison`` output; ``unit`` names the items."""
    if not c["n"]:
        return f"paired comparison: no {unit} in common"
    se = "" if c["mae_diff_se"] is None else f" +- {c['mae_diff_se']:.3f}"
    return "\n".join(
        [
            f"paired comparison over {c['n']} {unit} ({name_a} against {name_b})",
            f"  age MAE        {c['mae_a']:.3f} against {c['mae_b']:.3f}: difference "
            f"{c['mae_diff']:+.3f}{se} years, sign-flip p = {c['mae_p']:.4f}",
            f"  gender right   {c['gender_right_a']} against {c['gender_right_b']} of "
            f"{c['gender_n']}: "
            f"right only with {name_a} {c['gender_only_a']}, only with {name_b} "
            f"{c['gender_only_b']}, exact McNemar p = {c['gender_p']:.3f}",
        ]
    )


def class_metrics(true, probs, names: tuple[str, ...] | None = None) -> dict:
    """A classification head's accuracy, macro-F1 (the mean of the classes' F1, so a rare class
    counts as much as a common one), per-class recall and the [true, predicted] confusion
    matrix, over the items with a label (>= 0)."""
    t = np.asarray(true, np.int64)
    p = np.asarray(probs, np.float64)
    known = t >= 0
    t, pred = t[known], p[known].argmax(1)
    k = p.shape[1]
    names = tuple(names) if names and len(names) == k else tuple(str(i) for i in range(k))
    if t.size == 0:
        return {"n": 0}
    cm = confusion_matrix(t, pred, k)
    recall = np.diag(cm) / np.maximum(cm.sum(1), 1)
    precision = np.diag(cm) / np.maximum(cm.sum(0), 1)
    f1 = np.where(recall + precision > 0, 2 * recall * precision / (recall + precision + 1e-12), 0)
    present = cm.sum(1) > 0
    return {
        "n": int(t.size),
        "accuracy": float((pred == t).mean()),
        "macro_f1": float(f1[present].mean()),
        "recall": {n: float(r) for n, r, ok in zip(names, recall, present, strict=True) if ok},
        "classes": list(names),
        "confusion": cm.tolist(),
    }


def format_class_report(head: str, m: dict) -> str:
    """A head's figures as lines: accuracy, macro-F1, recall per class, confusion matrix."""
    if not m.get("n"):
        return f"{head}: no labelled faces"
    width = max(len(c) for c in m["classes"])
    lines = [
        f"{head} ({m['n']} faces): accuracy {100 * m['accuracy']:.2f} %, macro-F1 "
        f"{m['macro_f1']:.3f}",
        "  recall   " + ", ".join(f"{c} {100 * r:.1f} %" for c, r in m["recall"].items()),
        "  confusion (rows true, columns predicted):",
        "  " + " " * width + " " + " ".join(f"{c[:7]:>7}" for c in m["classes"]),
    ]
    for name, row in zip(m["classes"], m["confusion"], strict=True):
        lines.append(f"  {name:>{width}} " + " ".join(f"{v:>7}" for v in row))
    return "\n".join(lines)


def paired_classes(right_a, right_b) -> dict:
    """Two models on the same labelled items of one head: right with each, right with one only,
    and the exact McNemar p."""
    ra, rb = np.asarray(right_a, bool), np.asarray(right_b, bool)
    only_a, only_b = int((ra & ~rb).sum()), int((rb & ~ra).sum())
    return {
        "n": int(ra.size),
        "right_a": int(ra.sum()),
        "right_b": int(rb.sum()),
        "only_a": only_a,
        "only_b": only_b,
        "p": mcnemar_exact_p(only_a, only_b),
    }


def format_detection(d: dict) -> str:
    """The face detector's recall on the faces a head was evaluated on (``Aligner.recall`` per
    class): how many were aligned from detected landmarks rather than from their box."""
    lines = [
        f"face detector: found the face on {d['detected']} of {d['faces']} crops "
        f"({100 * d['recall']:.1f} %); the others aligned from their box "
        f"(landmark positions: {d['fallback_landmarks']})"
    ]
    for name, v in d["per_class"].items():
        lines.append(
            f"  the detector found the face on {v['detected']} of {v['faces']} {name} crops "
            f"({100 * v['recall']:.1f} %)"
        )
    where = {"detected": "the faces it found", "fallback": "the faces aligned from their box"}
    for source, m in d.get("by_alignment", {}).items():
        if not m.get("n"):  # no face there carries the head's label
            continue
        recall = ", ".join(f"{name} {100 * r:.1f}" for name, r in m["recall"].items())
        lines.append(
            f"  on {where[source]}: accuracy {100 * m['accuracy']:.2f} % of {m['n']} "
            f"(recall {recall} %)"
        )
    return "\n".join(lines)


def format_class_comparison(paired: dict, name_a: str = "a", name_b: str = "b") -> str:
    """Human-readable lines of ``paired_classes`` output per head."""
    lines = []
    for head, c in paired.items():
        if not c["n"]:
            lines.append(f"paired comparison of {head}: no faces in common")
            continue
        lines += [
            f"paired comparison of {head} over {c['n']} faces ({name_a} against {name_b})",
            f"  {head} right   {c['right_a']} against {c['right_b']} of {c['n']}: right only "
            f"with {name_a} {c['only_a']}, only with {name_b} {c['only_b']}, exact McNemar "
            f"p = {c['p']:.3f}",
        ]
    return "\n".join(lines)
