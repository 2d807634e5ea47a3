"""What the report says about the age and gender model: the shipped file's licence and accuracy.

The licence and the version come from the shipped model file's own metadata (``kiosk.license``,
``kiosk.model_version``), so the page quotes the file rather than a copy of its words. The file
carries no accuracy, so the figures live here, once, beside the version they were measured on
(MODEL_CARD.md, "Metrics: validation photos"). ``tests/test_report_page.py`` checks that this
version is the shipped file's and that the figures are the card's: shipping a new model file
without its figures fails the tests instead of printing another model's figures on the page.
The versions that analysed the reported videos come from the ``videos`` table (the summary
report's ``model_versions``); the page says when they are not the version the figures are of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

# The file `jobs.analyze` uses by default (config/analyze.yaml, model.path): the INT8 copy.
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "model" / "weights" / "age_gender.int8.onnx"


@dataclass(frozen=True)
class Accuracy:
    version: str
    age_mae_years: float
    gender_accuracy_pct: float
    measured_on: str


SHIPPED_ACCURACY = Accuracy(
    version="resnet18x3-mtsoup-80px-20261205-int8-static",
    age_mae_years=4.59,
    gender_accuracy_pct=94.2,
    measured_on="2,063 validation faces of UTKFace-dev (faces the model was not trained on)",
)

# Said when the model file cannot be read (a checkout without the weights): every model of this
# project is trained on UTKFace, whose terms this is.
LICENCE_FALLBACK = (
    "Trained on UTKFace, which is released for non-commercial research only; the model inherits "
    "that: non-commercial research use only (see MODEL_CARD.md)."
)


@dataclass(frozen=True)
class ShippedModel:
    version: str | None
    licence: str


@cache
def shipped_model(path: Path = SHIPPED_MODEL) -> ShippedModel:
    """The shipped model file's version and licence, from its metadata (not its weights)."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (OSError, DecodeError):  # missing or not an ONNX file: say the licence all the same
        return ShippedModel(None, LICENCE_FALLBACK)
    meta = {p.key: p.value for p in proto.metadata_props}
    return ShippedModel(
        meta.get("kiosk.model_version"), meta.get("kiosk.license") or LICENCE_FALLBACK
    )


def _accuracy_text(acc: Accuracy) -> str:
    return (
        f"Accuracy of the shipped model file (version {acc.version}), measured on "
        f"{acc.measured_on}: its age estimates are off by {acc.age_mae_years:.2f} years on "
        f"average, and it reads gender right {acc.gender_accuracy_pct:.1f} % of the time."
    )


def model_note(versions_used: Sequence[str] | None, model: ShippedModel | None = None) -> list[str]:
    """The page's paragraphs about the model: what the estimates are, which model made them,
    how accurate the shipped file is, and its licence. ``versions_used`` None: not known (the
    summary report was not run); empty: no video was analysed in the period."""
    model = model or shipped_model()
    notes = [
        "Age and gender are estimated from each visitor's face by a computer model: read them "
        "as trends over many visitors, never as facts about one person."
    ]
    if versions_used:
        which = ", ".join(versions_used)
        shipped = " (the model file shipped with this software)" if model.version == which else ""
        model_s = "Model" if len(versions_used) == 1 else "Models"
        notes.append(f"{model_s} that analysed the videos of this period: {which}{shipped}.")
    if model.version == SHIPPED_ACCURACY.version:
        notes.append(_accuracy_text(SHIPPED_ACCURACY))
        others = [v for v in versions_used or [] if v != SHIPPED_ACCURACY.version]
        if others:
            notes.append(
                f"These figures are not those of {', '.join(others)}: see CHANGELOG.md for "
                "the accuracy of earlier model versions."
            )
    else:
        notes.append(
            f"No accuracy figures are recorded for the shipped model file "
            f"(version {model.version or 'unknown'}); see MODEL_CARD.md."
        )
    notes.append(f"Licence, as the model file states it: {model.licence}")
    return notes
