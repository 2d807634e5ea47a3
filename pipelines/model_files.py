"""Opening an ONNX model file from any Beam filesystem, for the face model and the face-embedding
network alike (``pipelines.predictions``, ``pipelines.embeddings``)."""

from __future__ import annotations

import onnxruntime as ort

from common.sessions import cpu_session
from pipelines.inputs import read_bytes


class ModelFileError(ValueError):
    """The model file is missing or is not a model of the expected shape."""


def _read_bytes(path: str) -> bytes:
    try:
        return read_bytes(path)
    except Exception as e:  # Beam wraps filesystem errors in its own types per scheme
        raise ModelFileError(f"cannot read model file {path}: {e}") from None


def open_session(path: str, threads: int = 1) -> ort.InferenceSession:
    try:
        return cpu_session(_read_bytes(path), threads)
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(f"{path} is not a loadable ONNX model ({str(e)[:120]})") from None
