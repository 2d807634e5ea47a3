"""The charts ``jobs.evaluate --plots`` writes, as PNG files: matplotlib ``Figure``s without
pyplot, so no display or global state is involved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def write_plots(folder: Path, true_age, pred_age, metrics: dict) -> None:
    """The gender confusion matrix (when genders are known) and the age error by true age, as
    PNG files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if metrics.get("gender_n"):
        gender_confusion_plot(metrics).savefig(folder / "gender_confusion.png", dpi=100)
    age_error_plot(true_age, pred_age, metrics).savefig(folder / "age_error_by_age.png", dpi=100)


def write_head_plots(folder: Path, metrics: dict, heads) -> None:
    """The confusion matrix of each classification head in ``metrics`` (``class_metrics``
    output under the head's name) with labelled faces, as ``<head>_confusion.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for head in heads:
        m = metrics.get(head) or {}
        if m.get("n"):
            fig = confusion_plot(m["confusion"], m["classes"], f"{head}", m["accuracy"])
            fig.savefig(folder / f"{head}_confusion.png", dpi=100)


def gender_confusion_plot(metrics: dict) -> Figure:
    return confusion_plot(
        metrics["gender_confusion"], ["male", "female"], "gender", metrics["gender_acc"]
    )


def confusion_plot(confusion, classes, title: str, accuracy: float) -> Figure:
    """Counts of [true, predicted] classes, coloured by each row's share so a rare class's
    row reads as clearly as a common one's."""
    c = np.asarray(confusion)
    share = c / np.maximum(c.sum(1, keepdims=True), 1)
    k = len(classes)
    side = 3 + 0.45 * k
    fig = Figure(figsize=(side + 0.5, side))
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            colour = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, str(c[i, j]), ha="center", va="center", color=colour)
    ax.set_xticks(range(k), classes, rotation=30 if k > 2 else 0, ha="right" if k > 2 else "center")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (acc {100 * accuracy:.1f}%, n={int(c.sum())})")
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
