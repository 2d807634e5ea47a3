"""The detectors' graph rewrites, applied to the model bytes at load time (once per worker).

- ``fast_prelu``: ONNX Runtime runs a per-channel PRelu on conv feature maps as a slow
  broadcast outside its blocked (NCHWc) conv layout. Exactly equivalent, and 1.4-1.9x faster
  for the MTCNN nets on one core: PRelu(x) = a * x + (1 - a) * Relu(x), both products as
  depthwise 1x1 convolutions.
- ``merge_pnet_heads``: P-Net's two 1x1 head convs become one (about 8% of P-Net's time).
- ``any_input_size``: drops the input size a graph declares, for YuNet, whose layers all take
  any size but whose file says 640x640.

Each takes a parsed ``onnx.ModelProto``, edits it in place and says whether it changed it. One
that finds a graph other than the one it was written for raises ValueError (or IndexError,
KeyError from a malformed graph) before its first edit; ``rewritten`` then skips it, so an
unexpected file runs as shipped rather than not at all.

Cost at load, parse to serialized bytes (median of 30 ``rewritten`` calls): P-Net 0.4 ms, R-Net
0.3 ms, O-Net 6 ms (1.5 MB of weights to serialize), YuNet 0.1 ms.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

__all__ = ["PNET_HEADS", "Rewrite", "any_input_size", "fast_prelu", "merge_pnet_heads", "rewritten"]

Rewrite = Callable[[onnx.ModelProto], bool]
PNET_HEADS = "pnet_heads"  # the merged P-Net's only output: 4 box offsets, then 2 face logits


def rewritten(data: bytes, rewrites: Sequence[Rewrite]) -> bytes:
    """``data`` (a serialized model) with each of ``rewrites`` applied in turn, skipping those
    that do not fit the graph; ``data`` itself when none applied or it does not parse (ONNX
    Runtime then gives its own reason)."""
    if not rewrites:
        return data
    try:
        model = onnx.load_model_from_string(data)
    except DecodeError:
        return data
    changed = False
    for rewrite in rewrites:
        # Each rewrite checks the whole graph before its first edit: one that does not fit
        # raises with the model untouched, without the cost of a copy (3 ms for O-Net).
        with contextlib.suppress(ValueError, IndexError, KeyError):
            changed = rewrite(model) or changed
    return model.SerializeToString() if changed else data


def _graph(model: onnx.ModelProto) -> onnx.GraphProto:
    if not model.HasField("graph"):
        raise ValueError("no graph")
    return model.graph


def _float_initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Float initializers by name, as protos: converting all of them to arrays would cost more
    than the rewrites (20 ms for O-Net's dense layers), so callers convert the few they use."""
    return {t.name: t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}


def _prelu_as_convs(x: str, y: str, slope: np.ndarray) -> tuple[list, list]:
    """Nodes and initializers computing y = PRelu(x, slope) as a * x + (1 - a) * Relu(x)."""
    channels = slope.size
    a = slope.reshape(channels, 1, 1, 1).astype("<f4")
    pre = f"{y}__fastprelu"
    depthwise = {"group": channels, "kernel_shape": [1, 1]}
    nodes = [
        helper.make_node("Relu", [x], [pre + "_relu"]),
        helper.make_node("Conv", [x, pre + "_a"], [pre + "_ax"], **depthwise),
        helper.make_node("Conv", [pre + "_relu", pre + "_b"], [pre + "_br"], **depthwise),
        helper.make_node("Add", [pre + "_ax", pre + "_br"], [y]),
    ]
    tensors = [numpy_helper.from_array(a, pre + "_a"), numpy_helper.from_array(1 - a, pre + "_b")]
    return nodes, tensors


def _channel_slope(node: onnx.NodeProto, tensors: dict[str, onnx.TensorProto]) -> np.ndarray | None:
    """The slope of a PRelu node with one slope per channel of a 4-D input, shape (1, C, 1, 1);
    None for any other node."""
    if node.op_type != "PRelu" or len(node.input) != 2 or node.input[1] not in tensors:
        return None
    dims = tensors[node.input[1]].dims
    if len(dims) != 4 or dims[0] != 1 or math.prod(dims) != dims[1]:
        return None
    return numpy_helper.to_array(tensors[node.input[1]])


def fast_prelu(model: onnx.ModelProto) -> bool:
    """Per-channel 4-D PRelu nodes rewritten as depthwise convolutions, each in its node's
    place; slopes no other node reads are dropped. False (nothing done) when there is none."""
    graph = _graph(model)
    tensors = _float_initializers(graph)
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    nodes, extra, dropped = [], [], set()
    for node in graph.node:
        slope = _channel_slope(node, tensors)
        if slope is None:
            nodes.append(node)
            continue
        new_nodes, new_tensors = _prelu_as_convs(node.input[0], node.output[0], slope)
        nodes += new_nodes
        extra += new_tensors
        if uses.get(node.input[1]) == 1:
            dropped.add(node.input[1])
    if not extra:
        return False
    _replace_nodes(graph, nodes)
    for k in reversed(range(len(graph.initializer))):
        if graph.initializer[k].name in dropped:
            del graph.initializer[k]
    graph.initializer.extend(extra)
    return True


def _replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """The graph's nodes become ``nodes``, which may include its own (copied first, as
    clearing the field would take them along)."""
    copies = [onnx.NodeProto() for _ in nodes]
    for copy, node in zip(copies, nodes, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _pnet_heads(graph: onnx.GraphProto, tensors: dict[str, onnx.TensorProto]) -> dict[int, list]:
    """P-Net's head convs by output channels (4: box offsets, 2: face logits): [node inputs,
    node output]. ValueError when the graph does not have exactly these two on one input."""
    heads = {}
    for node in graph.node:
        ins = list(node.input)
        weight = tensors.get(ins[1]) if node.op_type == "Conv" and len(ins) == 3 else None
        if (
            weight is not None
            and len(weight.dims) == 4
            and tuple(weight.dims[2:]) == (1, 1)
            and weight.dims[0] in (2, 4)
            and ins[2] in tensors
        ):
            heads[weight.dims[0]] = [ins, node.output[0]]
    if set(heads) != {2, 4} or heads[2][0][0] != heads[4][0][0]:
        raise ValueError("not the P-Net graph")
    return heads


def merge_pnet_heads(model: onnx.ModelProto) -> bool:
    """P-Net only: its two 1x1 head convs and the Transpose/Softmax after them replaced by one
    6-channel conv whose NCHW output ``PNET_HEADS`` is the only graph output (the face
    probability is a sigmoid of the logit difference, computed by the caller). ValueError when
    the graph is not P-Net."""
    graph = _graph(model)
    tensors = _float_initializers(graph)
    heads = _pnet_heads(graph, tensors)
    dead = {heads[2][1], heads[4][1]}
    for node in graph.node:  # in graph order: everything downstream of the old heads goes
        if any(i in dead for i in node.input):
            dead.update(node.output)
    (reg_in, *reg), (_, *cls) = heads[4][0], heads[2][0]
    weight, bias = (
        np.concatenate([numpy_helper.to_array(tensors[r]), numpy_helper.to_array(tensors[c])])
        for r, c in zip(reg, cls, strict=True)
    )
    merged = [PNET_HEADS + "_w", PNET_HEADS + "_b"]
    kept = [n for n in graph.node if not any(o in dead for o in n.output)]
    _replace_nodes(graph, [*kept, helper.make_node("Conv", [reg_in, *merged], [PNET_HEADS])])
    graph.initializer.extend(
        [numpy_helper.from_array(weight, merged[0]), numpy_helper.from_array(bias, merged[1])]
    )
    del graph.output[:]
    output = graph.output.add(name=PNET_HEADS)
    output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT  # rank and sizes unknown
    return True


def any_input_size(model: onnx.ModelProto) -> bool:
    """The graph's declared input and output shapes dropped (element types kept) and its
    intermediate shapes (``value_info``, inferred at export for the declared size) removed:
    ONNX Runtime would otherwise refuse other sizes, or warn on every run that the outputs'
    sizes differ."""
    graph = _graph(model)
    for value in (*graph.input, *graph.output):
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")
    del graph.value_info[:]
    return True
