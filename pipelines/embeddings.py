"""Crops → identity embeddings: the face-embedding network through ONNX Runtime, in memory only.

An embedding is a biometric template, so it never leaves the process that computes it: it is
not written to any table, log, temporary file or Beam shuffle. The pipeline turns embeddings
into per-video appearance groups (``pipelines.identity``) where the frames are decoded, and only
those integers travel on. The network is a file of its own (``model/weights/
face_embedding.onnx``, ``jobs.export_embedding``): with 0.54 GFLOPs a face it runs on a sample
of faces, not on every one.
"""

from __future__ import annotations

import numpy as np

from model.preprocess import normalize
from pipelines.model_files import ModelFileError, open_session
from schemas.model_file import EMBEDDING_OUTPUT, INPUT_NAME, ModelSpec


class FaceEmbedder:
    """``embed(crops)``: L2-normalised embeddings of aligned RGB crops (N x S x S x 3 uint8),
    S and the crop template from the file's metadata."""

    def __init__(self, path: str, threads: int = 1):
        self.session = open_session(path, threads)
        outputs = {o.name for o in self.session.get_outputs()}
        if EMBEDDING_OUTPUT not in outputs:
            raise ModelFileError(
                f"{path} is not a face-embedding model: it has no '{EMBEDDING_OUTPUT}' output"
            )
        try:
            self.spec = ModelSpec.from_metadata(self.session.get_modelmeta().custom_metadata_map)
        except (ValueError, KeyError) as e:
            raise ModelFileError(f"{path}: {e}") from None
        self.template = np.asarray(self.spec.crop_template, np.float32)
        self.size = self.spec.input_size

    def embed(self, crops: np.ndarray, batch: int = 64) -> np.ndarray:
        parts = [
            self.session.run(
                [EMBEDDING_OUTPUT],
                {INPUT_NAME: normalize(crops[i : i + batch], self.spec.mean, self.spec.std)},
            )[0]
            for i in range(0, len(crops), batch)
        ]
        if not parts:
            return np.zeros((0, int(self.spec.extra.get("embedding_dim", 128))), np.float32)
        out = np.concatenate(parts).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
