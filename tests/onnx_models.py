"""Tiny face-model ONNX files built in tests, with the real contract but no trained weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from schemas.model_file import CLASS_NAMES, ModelSpec


def template_for(size: int) -> tuple[tuple[float, float], ...]:
    """A plausible five-point template: eyes, nose, mouth corners in a size x size crop."""
    rel = ((0.34, 0.42), (0.66, 0.42), (0.5, 0.58), (0.38, 0.74), (0.62, 0.74))
    return tuple((x * size, y * size) for x, y in rel)


def write_tiny_model(
    path,
    size: int = 32,
    outputs: tuple[str, ...] | None = None,
    seed: int = 0,
    extra_heads: dict[str, tuple[float, ...]] | None = None,
    version: str = "tiny-test-model",
    metadata: dict[str, str] | None = None,
):
    """Global-average-pool → linear heads; enough to exercise every tensor name and metadata key.

    ``extra_heads`` adds classification heads (``<head>_logits``, ``<head>_prob``, class names
    from ``CLASS_NAMES``), each given one red level (0-255) per class: the head predicts the class
    whose level is nearest the crop's mean red, so a test knows every answer. ``metadata``: further
    keys of the spec's ``extra`` (``val_split``, say)."""
    rng = np.random.default_rng(seed)
    init = [
        numpy_helper.from_array(rng.normal(0, 1, (3, 101)).astype(np.float32), "w_age"),
        numpy_helper.from_array(np.zeros(101, np.float32), "b_age"),
        numpy_helper.from_array(rng.normal(0, 1, (3, 2)).astype(np.float32), "w_gender"),
        numpy_helper.from_array(np.zeros(2, np.float32), "b_gender"),
        numpy_helper.from_array(np.arange(101, dtype=np.float32).reshape(101, 1), "years"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["feat"]),
        helper.make_node("Gemm", ["feat", "w_age", "b_age"], ["age_logits"]),
        helper.make_node("Gemm", ["feat", "w_gender", "b_gender"], ["gender_logits"]),
        helper.make_node("Softmax", ["age_logits"], ["age_p"], axis=1),
        helper.make_node("MatMul", ["age_p", "years"], ["age_col"]),
        helper.make_node("Reshape", ["age_col", "neg1"], ["age"]),
        helper.make_node("Softmax", ["gender_logits"], ["gender_p"], axis=1),
        helper.make_node("Slice", ["gender_p", "one", "two", "axis1"], ["female_col"]),
        helper.make_node("Reshape", ["female_col", "neg1"], ["gender_prob"]),
    ]
    init.append(numpy_helper.from_array(np.array([-1], np.int64), "neg1"))
    wanted = outputs or ("age_logits", "gender_logits", "age", "gender_prob")
    shapes = {
        "age_logits": ["N", 101],
        "gender_logits": ["N", 2],
        "age": ["N"],
        "gender_prob": ["N"],
    }
    heads = {"age": [str(a) for a in range(101)], "gender": ["male", "female"]}
    for head, levels in (extra_heads or {}).items():
        init += _nearest_red_weights(head, levels)
        nodes.append(
            helper.make_node("Gemm", ["feat", f"w_{head}", f"b_{head}"], [f"{head}_logits"])
        )
        nodes.append(helper.make_node("Softmax", [f"{head}_logits"], [f"{head}_prob"], axis=1))
        shapes[f"{head}_logits"] = shapes[f"{head}_prob"] = ["N", len(levels)]
        wanted = (*wanted, f"{head}_logits", f"{head}_prob") if outputs is None else wanted
        heads[head] = list(CLASS_NAMES[head])
    graph = helper.make_graph(
        nodes,
        "tiny_face_model",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in wanted],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = ModelSpec(
        input_size=size,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        crop_template=template_for(size),
        heads=heads,
        model_version=version,
        extra=dict(metadata or {}),
    )
    for key, value in spec.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return spec


def _nearest_red_weights(head: str, levels: tuple[float, ...]) -> list:
    """Linear weights whose argmax is the level nearest the normalised mean red r:
    -(r - c)^2 = 2cr - c^2 - r^2, and -r^2 is the same for every class."""
    c = (np.asarray(levels, np.float32) / 255 - 0.5) / 0.25  # as the spec's mean/std normalise
    w = np.zeros((3, len(levels)), np.float32)
    w[0] = 2 * c
    return [
        numpy_helper.from_array(w, f"w_{head}"),
        numpy_helper.from_array((-(c**2)).astype(np.float32), f"b_{head}"),
    ]
