"""ONNX Runtime sessions on the CPU, made one way for the face model, the detectors and the
training-side checks: a fixed intra-op thread count (a Beam worker or a benchmark decides how many
cores a model gets) and one inter-op thread, so sessions in parallel workers do not oversubscribe
the cores."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def cpu_session(model: str | Path | bytes, threads: int = 1) -> ort.InferenceSession:
    """A CPU session for a model file path or the model's serialized bytes. ONNX Runtime's own
    exceptions pass through: each caller words them for what it was loading."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are about graph fusions
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
