"""ONNX export of a trained checkpoint and the torch vs ONNX Runtime parity check.

The exported graph has one input, ``image`` (float32 [N, 3, S, S], RGB, ``(x/255 - mean)/std``),
and the outputs ``age_logits`` [N, 101], ``gender_logits`` [N, 2], ``age`` [N] (expected age in
years, softmax-weighted mean of the classes, computed in the graph), ``gender_prob`` [N]
(P(female), in the graph) and, for any further head (mask, emotion), ``<head>_logits`` and its
class probabilities ``<head>_prob``. Metadata follow ``schemas.model_file.ModelSpec``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from common.sessions import cpu_session
from model.network import MultiTaskNet, build_model
from model.train_config import model_config
from schemas.model_file import CLASS_NAMES, EMBEDDING_OUTPUT, INPUT_NAME, ModelSpec

LICENSE = (
    "Trained on UTKFace (non-commercial research use only); this model inherits that: "
    "non-commercial research use only."
)
# The sets the further heads learn from, and their terms.
HEAD_DATA = {
    "emotion": "FER-2013 (research use)",
    "mask": "face-mask-dataset-ilc-2021 (research use)",
}


def license_text(heads) -> str:
    """The file's licence line: UTKFace's terms, and those of the sets its further heads were
    trained on."""
    others = [HEAD_DATA[h] for h in heads if h in HEAD_DATA]
    if not others:
        return LICENSE
    return (
        f"Trained on UTKFace (non-commercial research use only) and {' and '.join(others)}; "
        "this model inherits that: non-commercial research use only."
    )


class ExportWrapper(nn.Module):
    """``image -> (age_logits, gender_logits, age, gender_prob, *<head>_logits, *<head>_prob)``."""

    def __init__(self, model: MultiTaskNet):
        super().__init__()
        self.model = model
        self.extra = [h for h in model.head_classes if h not in ("age", "gender")]
        n_age = model.head_classes["age"]
        self.register_buffer("ages", torch.arange(n_age, dtype=torch.float32), persistent=False)

    @property
    def output_names(self) -> list[str]:
        extra = [f"{h}_logits" for h in self.extra] + [f"{h}_prob" for h in self.extra]
        return ["age_logits", "gender_logits", "age", "gender_prob", *extra]

    def forward(self, image: torch.Tensor):
        out = self.model(image)
        age = (torch.softmax(out["age"], dim=1) * self.ages).sum(dim=1)
        gender_prob = torch.softmax(out["gender"], dim=1)[:, 1]
        logits = [out[h] for h in self.extra]
        probs = [torch.softmax(v, dim=1) for v in logits]
        return (out["age"], out["gender"], age, gender_prob, *logits, *probs)


def load_checkpoint(path: str | Path) -> tuple[MultiTaskNet, dict]:
    """A training run's network, in eval mode, and its checkpoint (``model.training``)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(model_config(ckpt["config"]["model"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt


def head_labels(heads: Mapping[str, int]) -> dict[str, list[str]]:
    """Class names per head: those of ``schemas.model_file.CLASS_NAMES`` where the head has that
    many classes, else '0'..'k-1' (ages are years)."""
    out = {}
    for name, n in heads.items():
        names = CLASS_NAMES.get(name, ())
        out[name] = list(names) if len(names) == n else [str(i) for i in range(n)]
    return out


def export_onnx(
    model: MultiTaskNet, spec: ModelSpec, path: str | Path, opset: int = 17
) -> list[str]:
    """Write the ONNX file with a dynamic batch axis and ``spec`` as metadata; returns output
    names."""
    model = model.eval().to(memory_format=torch.contiguous_format)
    wrapper = ExportWrapper(model).eval()
    write_onnx(wrapper, wrapper.output_names, spec, path, opset)
    return wrapper.output_names


def export_embedding_onnx(net: nn.Module, spec: ModelSpec, path: str | Path) -> list[str]:
    """The identity network (``model.face_embedding``): ``image`` → ``embedding`` [N, D]."""
    write_onnx(net.eval(), [EMBEDDING_OUTPUT], spec, path)
    return [EMBEDDING_OUTPUT]


def write_onnx(
    module: nn.Module, names: list[str], spec: ModelSpec, path: str | Path, opset: int = 17
) -> None:
    """Trace ``module`` to ``path`` (written whole or not at all) with a dynamic batch axis and
    ``spec`` as metadata."""
    dummy = torch.zeros(2, 3, spec.input_size, spec.input_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    # The TorchScript exporter (dynamo=False): the dynamo one needs onnxscript, not a dependency.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (dummy,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={INPUT_NAME: {0: "N"}, **{n: {0: "N"} for n in names}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(tmp))
    del proto.metadata_props[:]
    for k, v in spec.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "kiosk-demographics model/onnx_export.py"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(path)


def parity(model: MultiTaskNet, onnx_path: str | Path, inputs: np.ndarray) -> dict[str, float]:
    """Max abs difference per output between torch and ONNX Runtime on ``inputs`` (NCHW)."""
    wrapper = ExportWrapper(model.eval()).eval()
    with torch.no_grad():
        ref = [t.numpy() for t in wrapper(torch.from_numpy(np.ascontiguousarray(inputs)))]
    sess = cpu_session(onnx_path, 1)
    got = sess.run(wrapper.output_names, {INPUT_NAME: inputs.astype(np.float32)})
    return {
        n: float(np.abs(r - g).max())
        for n, r, g in zip(wrapper.output_names, ref, got, strict=True)
    }
