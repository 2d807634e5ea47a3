"""pipelines.faces.graphs: the load-time rewrites give the shipped networks' outputs, and any
graph they were not written for runs as shipped."""

from collections import Counter

import numpy as np
import onnx
import pytest
from conftest import UTKFACE, load_utkface_chips
from onnx import TensorProto, helper, numpy_helper

from common.sessions import cpu_session
from pipelines.faces import MtcnnDetector, mtcnn_model_dir
from pipelines.faces.graphs import (
    PNET_HEADS,
    any_input_size,
    fast_prelu,
    merge_pnet_heads,
    rewritten,
)


def shipped(net: str) -> bytes:
    return (mtcnn_model_dir() / f"{net}.onnx").read_bytes()


def ops(data: bytes) -> Counter:
    return Counter(n.op_type for n in onnx.load_model_from_string(data).graph.node)


def initializer(data: bytes, name: str) -> np.ndarray:
    graph = onnx.load_model_from_string(data).graph
    return numpy_helper.to_array(next(t for t in graph.initializer if t.name == name))


def test_graph_rewrites_are_exact():
    """The load-time rewrites (PRelu as depthwise convs; P-Net's heads merged) give the shipped
    networks' outputs, and the same detections."""
    fast, as_shipped = MtcnnDetector(), MtcnnDetector(fast_prelu=False)
    assert fast._names["p"][1] == [PNET_HEADS] and len(as_shipped._names["p"][1]) == 2
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (1, 60, 40, 3)).astype(np.float32)
    (heads,) = fast._run("p", x)
    reg, prob = as_shipped._run("p", x)
    np.testing.assert_allclose(heads[0, :4].transpose(1, 2, 0), reg[0], atol=1e-5)
    face_prob = 1 / (1 + np.exp(heads[0, 4] - heads[0, 5]))
    np.testing.assert_allclose(face_prob, prob[0, :, :, 1], atol=1e-5)
    for net, shape in (("r", (5, 24, 24, 3)), ("o", (3, 48, 48, 3))):
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        for a, b in zip(fast._run(net, x), as_shipped._run(net, x), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
    if not UTKFACE.is_file():
        pytest.skip(f"UTKFace dev archive not found at {UTKFACE}")
    for chip in load_utkface_chips(3):
        a, b = fast.detect(chip), as_shipped.detect(chip)
        assert len(a) == len(b) == 1
        np.testing.assert_allclose(a[0].box, b[0].box, atol=1e-2)
        np.testing.assert_allclose(a[0].landmarks, b[0].landmarks, atol=1e-2)


def test_fast_prelu_replaces_only_per_channel_prelus():
    """O-Net: its four conv PRelus (slopes (1, C, 1, 1)) become Relu, two depthwise Convs and
    an Add each, in place; the dense layer's PRelu (slope (256,)) stays."""
    before = ops(shipped("onet"))
    data = rewritten(shipped("onet"), (fast_prelu,))
    after = ops(data)
    assert (before["PRelu"], after["PRelu"]) == (5, 1)
    assert after["Relu"] == before["Relu"] + 4 and after["Conv"] == before["Conv"] + 8
    assert after["Add"] == before["Add"] + 4
    graph = onnx.load_model_from_string(data).graph
    names = {t.name for t in graph.initializer}
    slopes = ["p_re_lu_7_initializer_22", "p_re_lu_8_initializer_20", "p_re_lu_9_initializer_18"]
    assert "slope" in names and not names & {*slopes, "p_re_lu_10_initializer_16"}
    first = [n.op_type for n in graph.node[:6]]
    assert first == ["Transpose", "Conv", "Relu", "Conv", "Conv", "Add"]  # where PRelu was
    ax, br = graph.node[3], graph.node[4]
    attributes = {a.name: helper.get_attribute_value(a) for a in ax.attribute}
    assert attributes == {"group": 32, "kernel_shape": [1, 1]}
    slope = initializer(shipped("onet"), slopes[0]).reshape(32, 1, 1, 1)
    np.testing.assert_array_equal(initializer(data, ax.input[1]), slope)
    np.testing.assert_array_equal(initializer(data, br.input[1]), 1 - slope)


def test_merge_pnet_heads_leaves_one_output():
    data = rewritten(shipped("pnet"), (fast_prelu, merge_pnet_heads))
    graph = onnx.load_model_from_string(data).graph
    assert [o.name for o in graph.output] == [PNET_HEADS]
    assert ops(data)["Softmax"] == 0 and graph.node[-1].output == [PNET_HEADS]
    out = cpu_session(data).run(None, {"input_1": np.zeros((1, 30, 20, 3), np.float32)})
    # 4 offsets + 2 logits on P-Net's grid: (30, 20) -> conv, pool, conv, conv -> (10, 5)
    assert [o.shape for o in out] == [(1, 6, 10, 5)]


@pytest.mark.parametrize("net", ["rnet", "onet"])
def test_merge_pnet_heads_refuses_other_graphs_untouched(net):
    model = onnx.load_model_from_string(shipped(net))
    before = model.SerializeToString()
    with pytest.raises(ValueError, match="not the P-Net graph"):
        merge_pnet_heads(model)
    assert model.SerializeToString() == before
    data = shipped(net)
    assert rewritten(data, (merge_pnet_heads,)) is data  # run as shipped


def test_unexpected_bytes_and_graphs_run_as_shipped():
    assert rewritten(b"not a model", (fast_prelu, merge_pnet_heads)) == b"not a model"
    assert rewritten(b"", (any_input_size,)) == b""
    data = shipped("rnet")
    assert rewritten(data, ()) is data
    plain = onnx.load_model_from_string(rewritten(data, (fast_prelu,)))
    assert fast_prelu(plain) is False  # no per-channel PRelu left: nothing to do
    with pytest.raises(ValueError, match="no graph"):
        any_input_size(onnx.ModelProto())


def fixed_size_model() -> bytes:
    """A conv net that declares a 1x3x8x8 input and the intermediate shapes for it."""
    weight = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])],
        [weight],
        value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 2, 8, 8])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]).SerializeToString()


def test_any_input_size():
    data = fixed_size_model()
    with pytest.raises(Exception, match="dimensions"):  # as declared: 8x8 only
        cpu_session(data).run(None, {"x": np.ones((1, 3, 16, 24), np.float32)})
    freed = rewritten(data, (any_input_size,))
    graph = onnx.load_model_from_string(freed).graph
    assert not graph.value_info
    for value in (*graph.input, *graph.output):
        tensor = value.type.tensor_type
        assert tensor.elem_type == TensorProto.FLOAT and not tensor.HasField("shape")
    (y,) = cpu_session(freed).run(None, {"x": np.ones((1, 3, 16, 24), np.float32)})
    assert y.shape == (1, 2, 16, 24) and y[0, 0, 5, 5] == 27 and y[0, 0, 0, 0] == 12
