"""The contract of a face-model ONNX file: tensor names and the metadata that travels with it.

The exporter (``model/onnx_export.py``) writes it and the pipeline (``pipelines/predictions.py``)
reads it, so a model file alone is enough to run the model: input size, colour order, normalisation,
the face-crop template the crops must be warped to, and what each head's classes mean.
"""

import json
from dataclasses import dataclass, field

INPUT_NAME = "image"
# The identity network's one output: an L2-normalised face embedding [N, D]. It is a file of
# its own (run on a sample of a video's faces), with the same metadata keys and no heads.
EMBEDDING_OUTPUT = "embedding"
# Outputs every age/gender model must have; further heads add ``<head>_logits`` and
# ``<head>_prob`` outputs.
REQUIRED_OUTPUTS = ("age_logits", "gender_logits", "age", "gender_prob")
PREFIX = "kiosk."
# What the classes of the named heads mean, in the order of their outputs. Mask status and
# emotion are those of the data sets they are trained on (face-mask-dataset-ilc-2021, FER-2013).
CLASS_NAMES = {
    "gender": ("male", "female"),
    "mask": ("with_mask", "with_incorrect_mask", "without_mask"),
    "emotion": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything a consumer needs to feed the network and read its heads."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # Five (x, y) points in input-crop pixels: left eye, right eye, nose, left and right mouth
    # corner (left/right as seen in the image).
    crop_template: tuple[tuple[float, float], ...]
    heads: dict[str, list[str]]
    model_version: str
    color_order: str = "RGB"
    training_data: str = ""
    license: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        values = {
            "input_size": str(self.input_size),
            "color_order": self.color_order,
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "crop_template": json.dumps([list(p) for p in self.crop_template]),
            "heads": json.dumps(self.heads),
            "model_version": self.model_version,
            "training_data": self.training_data,
            "license": self.license,
            **self.extra,
        }
        if "gender" in self.heads:
            values["gender_prob"] = "probability that the face is female"
        return {PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> "ModelSpec":
        """Parse ONNX ``metadata_props``; raises ValueError naming the first missing key."""
        values = {k[len(PREFIX) :]: v for k, v in metadata.items() if k.startswith(PREFIX)}
        required = ("input_size", "mean", "std", "crop_template", "heads", "model_version")
        for key in required:
            if key not in values:
                raise ValueError(f"model metadata lacks '{PREFIX}{key}'")
        known = set(required) | {"color_order", "training_data", "license", "gender_prob"}
        template = tuple(tuple(float(c) for c in p) for p in json.loads(values["crop_template"]))
        if len(template) != 5:
            raise ValueError("model metadata 'crop_template' must hold five (x, y) points")
        return cls(
            input_size=int(values["input_size"]),
            mean=tuple(json.loads(values["mean"])),
            std=tuple(json.loads(values["std"])),
            crop_template=template,
            heads=json.loads(values["heads"]),
            model_version=values["model_version"],
            color_order=values.get("color_order", "RGB"),
            training_data=values.get("training_data", ""),
            license=values.get("license", ""),
            extra={k: v for k, v in values.items() if k not in known},
        )
