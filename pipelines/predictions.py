"""Stage 5, crops → predictions: the multi-task face model through ONNX Runtime.

``FaceModelHandler`` plugs the model into Beam's ``RunInference``: each example is one video's
batch of crops (``pipelines.analyse``), and Beam loads one session per worker. Beam's stock ONNX
handler returns only the first output; this one returns every head.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from apache_beam.ml.inference.base import ModelHandler

from model.preprocess import normalize
from pipelines.model_files import ModelFileError, open_session
from schemas.model_file import INPUT_NAME, REQUIRED_OUTPUTS, ModelSpec


@dataclass(frozen=True)
class FacePrediction:
    """Every head's answer for one crop."""

    age: float  # expected age in years
    age_probs: np.ndarray  # float32 (101,), P(age = k years)
    gender_prob: float  # P(female)
    extra: dict[str, np.ndarray]  # class probabilities of further heads, by head name


def read_spec(session: ort.InferenceSession, path: str) -> ModelSpec:
    """Validate the tensors and metadata a face model must have, and return its spec."""
    outputs = {o.name for o in session.get_outputs()}
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise ModelFileError(
            f"{path} is not an age/gender face model: outputs {', '.join(missing)} are missing"
        )
    if INPUT_NAME not in {i.name for i in session.get_inputs()}:
        raise ModelFileError(f"{path} has no input named '{INPUT_NAME}'")
    try:
        return ModelSpec.from_metadata(session.get_modelmeta().custom_metadata_map)
    except (ValueError, KeyError) as e:
        raise ModelFileError(f"{path}: {e}") from None


def load_model_spec(path: str) -> ModelSpec:
    """Check a model file up front (before any work starts) and return its spec."""
    return read_spec(open_session(path), path)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def predict(session: ort.InferenceSession, spec: ModelSpec, crops: Sequence[np.ndarray]):
    """Run one batch of crops; returns one FacePrediction per crop."""
    names = [o.name for o in session.get_outputs()]
    values = dict(
        zip(
            names,
            session.run(names, {INPUT_NAME: normalize(crops, spec.mean, spec.std)}),
            strict=True,
        )
    )
    age_probs = _softmax(values["age_logits"]).astype(np.float32)
    extra_heads = [n[: -len("_logits")] for n in names if n.endswith("_logits")]
    extra_heads = [h for h in extra_heads if h not in ("age", "gender")]
    extras = {h: _softmax(values[f"{h}_logits"]).astype(np.float32) for h in extra_heads}
    return [
        FacePrediction(
            age=float(values["age"][i]),
            age_probs=age_probs[i],
            gender_prob=float(values["gender_prob"][i]),
            extra={h: p[i] for h, p in extras.items()},
        )
        for i in range(len(crops))
    ]


class LoadedModel:
    """A session with its spec (a class, not a tuple: Beam's model sharing keeps a weak ref)."""

    def __init__(self, session: ort.InferenceSession, spec: ModelSpec):
        self.session = session
        self.spec = spec


class FaceModelHandler(ModelHandler[np.ndarray, list[FacePrediction], LoadedModel]):
    """RunInference handler: each example is a batch of aligned RGB crops (N x S x S x 3, one
    video's, batched by ``pipelines.analyse.AnalyseVideo``) and its result the list of their
    FacePredictions, from one ONNX Runtime call. Beam's own batching is held at one example
    per call, so nothing waits for ``finish_bundle`` (see ``pipelines.analyse``)."""

    def __init__(self, model_path: str, threads: int):
        super().__init__()
        self._path = model_path
        self._threads = threads

    def load_model(self) -> LoadedModel:
        session = open_session(self._path, self._threads)
        return LoadedModel(session, read_spec(session, self._path))

    def run_inference(
        self, batch: Sequence[np.ndarray], model: LoadedModel, inference_args=None
    ) -> Iterable[list[FacePrediction]]:
        return [predict(model.session, model.spec, crops) for crops in batch]

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": 1, "max_batch_size": 1}

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(crops.nbytes for crops in batch)

    def get_metrics_namespace(self) -> str:
        return "kiosk_face_model"
