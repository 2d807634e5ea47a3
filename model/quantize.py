"""Lower-precision copies of an exported model (torch-free): INT8 with ONNX Runtime, and FP16
weight storage.

``half_weights``: float weights stored as FP16 and cast back to FP32 in the graph. ONNX Runtime
folds the casts when it loads the file, so inference runs exactly as before (FP32, same speed) on
weights rounded to FP16; only the file is half the size.

``dynamic``: weights INT8, activations quantised on the fly (MatMul/Gemm only in practice).
``static``: QDQ INT8 convolutions calibrated on a sample of training chips (never validation).
Metadata are copied over. The ship rule of issue 3: an INT8 model replaces the FP32 one only if
it loses < 0.1 year MAE and < 0.3 points gender accuracy on the validation split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)

from schemas.model_file import INPUT_NAME, PREFIX


class _Reader:
    def __init__(self, batches: list[np.ndarray]):
        self._it = iter(batches)

    def get_next(self):
        b = next(self._it, None)
        return None if b is None else {INPUT_NAME: b}


def quantize(src: str | Path, dst: str | Path, mode: str = "static", calib=None) -> Path:
    """Write an INT8 copy of ``src`` to ``dst``; ``calib`` = normalised NCHW float32 inputs."""
    src, dst = Path(src), Path(dst)
    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    if mode == "dynamic":
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
    elif mode == "static":
        if calib is None or len(calib) == 0:
            raise ValueError("static quantisation needs calibration inputs")
        batches = [calib[i : i + 32] for i in range(0, len(calib), 32)]
        quantize_static(
            str(pre),
            str(dst),
            _Reader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    else:
        raise ValueError(f"unknown mode '{mode}' (dynamic, static)")
    pre.unlink(missing_ok=True)
    # keep the metadata (some quantiser versions drop it), with a version of its own: the INT8
    # file's results differ slightly, and incremental runs reanalyse on a version change
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    version = PREFIX + "model_version"
    if version in meta:
        meta[version] += f"-int8-{mode}"
    proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    for k, v in meta.items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(proto, str(dst))
    return dst


def half_weights(path: str | Path, min_elements: int = 16) -> Path:
    """Store ``path``'s float initializers (those of at least ``min_elements``) as FP16, in place.

    Each becomes ``<name>.fp16`` plus a ``Cast`` to FP32 under the original name, so the graph
    around it is unchanged. Tiny tensors (shape constants, scalars) are left as they are."""
    path = Path(path)
    proto = onnx.load(str(path))
    graph = proto.graph
    kept, casts = [], []
    for init in graph.initializer:
        values = numpy_helper.to_array(init)
        if init.data_type != TensorProto.FLOAT or values.size < min_elements:
            kept.append(init)
            continue
        halved = values.astype(np.float16)
        if not np.isfinite(halved).all():
            raise ValueError(f"weight {init.name} does not fit FP16 (|w| > 65504)")
        half = numpy_helper.from_array(halved, init.name + ".fp16")
        kept.append(half)
        casts.append(
            helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=half.name)
        )
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    tmp = path.with_suffix(".tmp.onnx")
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path
