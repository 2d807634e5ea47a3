"""Multi-task loss: ``total = sum(weight[head] * loss[head])``, one backward pass.

Age (101 classes, one per year) supports:
* ``ce``: plain cross-entropy on the year class;
* ``gaussian``: cross-entropy against a Gaussian label distribution N(age, sigma^2) over the
  classes (soft labels, DLDL);
* ``mean_variance``: ``ce`` plus Pan et al.'s mean loss ``(E[a] - age)^2 / 2`` and variance loss
  ``Var[a]`` weighted by ``mean_weight`` / ``variance_weight``.
``l1_weight`` adds ``|E[a] - age|`` to any of them. Every other head is cross-entropy with
``label_smoothing`` and, with ``class_weight_power`` p > 0, each class weighted by its share of
the training labels to the power -p (rare classes, such as disgust or a mask worn wrongly,
count more), and with ``focal_gamma`` g > 0 each face's loss scaled by ``(1 - p_true)^g`` (Lin
et al.'s focal loss: faces the head already reads right count less). Labels of -1 (unknown: a
face from a set without that label) are ignored, so each head learns only from the faces
labelled for it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from model.train_config import AgeLossConfig, LossConfig


def gaussian_targets(age: torch.Tensor, num_classes: int, sigma: float) -> torch.Tensor:
    """[N] ages -> [N, C] Gaussian label distributions, each row summing to 1."""
    classes = torch.arange(num_classes, dtype=torch.float32, device=age.device)
    d = classes[None, :] - age.float()[:, None]
    p = torch.exp(-0.5 * (d / sigma) ** 2)
    return p / p.sum(1, keepdim=True)


def expected_age(logits: torch.Tensor) -> torch.Tensor:
    classes = torch.arange(logits.shape[1], dtype=logits.dtype, device=logits.device)
    return (logits.softmax(1) * classes).sum(1)


def age_loss(logits: torch.Tensor, age: torch.Tensor, cfg: AgeLossConfig) -> torch.Tensor:
    logits = logits.float()
    if cfg.type == "ce":
        loss = F.cross_entropy(logits, age)
    elif cfg.type == "gaussian":
        target = gaussian_targets(age, logits.shape[1], float(cfg.sigma))
        loss = -(target * logits.log_softmax(1)).sum(1).mean()
    elif cfg.type == "mean_variance":
        p = logits.softmax(1)
        classes = torch.arange(logits.shape[1], dtype=p.dtype, device=p.device)
        mean = (p * classes).sum(1)
        var = (p * (classes[None] - mean[:, None]) ** 2).sum(1)
        loss = (
            F.cross_entropy(logits, age)
            + float(cfg.mean_weight) * (0.5 * (mean - age.float()) ** 2).mean()
            + float(cfg.variance_weight) * var.mean()
        )
    else:
        raise ValueError(f"unknown age loss '{cfg.type}' (ce, gaussian, mean_variance)")
    if cfg.l1_weight:
        loss = loss + float(cfg.l1_weight) * (expected_age(logits) - age.float()).abs().mean()
    return loss


def class_weights(labels, classes: int, power: float) -> torch.Tensor | None:
    """Per-class loss weights ``share ** -power`` normalised to a labelled-face mean of 1 (None
    for power 0): ``labels`` are a head's training labels, -1 for unlabelled faces."""
    if not power:
        return None
    y = torch.as_tensor(labels)
    counts = torch.bincount(y[y >= 0], minlength=classes).double().clamp(min=1)
    w = (counts / counts.sum()) ** -power
    return (w / (w * counts).sum() * counts.sum()).float()


def class_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None,
    label_smoothing: float,
    focal_gamma: float,
) -> torch.Tensor:
    """A classification head's loss: cross-entropy with label smoothing and class weights
    (averaged over the weights, as ``F.cross_entropy`` averages), each face's term scaled by
    ``(1 - p_true)^focal_gamma``; ``focal_gamma`` 0 is ``F.cross_entropy`` exactly."""
    logits = logits.float()
    if not focal_gamma:
        return F.cross_entropy(logits, y, weight=weight, label_smoothing=label_smoothing)
    ce = F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing)
    p_true = logits.softmax(1).gather(1, y[:, None])[:, 0]
    w = torch.ones_like(ce) if weight is None else weight[y]
    return (w * (1 - p_true) ** focal_gamma * ce).sum() / w.sum()


class MultiTaskLoss:
    """Callable ``(outputs, targets) -> (total, {head: loss})`` built from the ``loss:`` config
    and, for ``class_weight_power``, the training labels of each head.

    Heads absent from ``targets`` or whose labels are all -1 contribute nothing.
    """

    def __init__(self, cfg: LossConfig, train_labels: Mapping | None = None, heads=None):
        self.weights = {k: float(v) for k, v in cfg.weights.items()}
        self.age_cfg = cfg.age
        self.label_smoothing = float(cfg.label_smoothing)
        self.focal_gamma = float(cfg.focal_gamma)
        self.class_weights = {
            head: class_weights(train_labels[head], n, cfg.class_weight_power)
            for head, n in (heads or {}).items()
            if head != "age" and train_labels is not None and head in train_labels
        }

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        for name, logits in outputs.items():
            y = targets.get(name)
            if y is None:
                continue
            known = y >= 0
            if not bool(known.any()):
                continue
            if name == "age":
                parts[name] = age_loss(logits[known], y[known], self.age_cfg)
            else:
                weight = self.class_weights.get(name)
                parts[name] = class_loss(
                    logits[known],
                    y[known],
                    None if weight is None else weight.to(logits.device),
                    self.label_smoothing,
                    self.focal_gamma,
                )
        if not parts:
            raise ValueError("no head has labels in this batch")
        total = sum(self.weights[k] * v for k, v in parts.items())
        return total, parts
