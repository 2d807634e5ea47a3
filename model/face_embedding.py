"""The identity embedding network: dlib's face-recognition ResNet, read from its ``.dat`` file.

Davis King trained it with a metric loss on about 3 million faces of 7,485 people (none of them
in LFW) and released the weights into the public domain (CC0 1.0; PyPI package
``face-recognition-models``). We re-express the network in PyTorch and export it to ONNX
(``jobs.export_embedding``), so neither dlib nor the package is needed at run time.

The network (dlib's ``dnn_face_recognition_ex.cpp``): a 7x7/2 convolution and 3x3/2 max pool on
a 150x150 RGB chip, residual stages of 32, 64, 128 and 256 channels whose first block
downsamples, global average pooling and a 128-D linear layer without bias. Two dlib details
matter for exact outputs:
- stride-2 convolutions and pools have no padding, so a downsampling block's convolution path
  can come out one pixel smaller than its average-pooled shortcut; dlib's ``add_prev`` then
  zero-pads the smaller tensor at the bottom and right (and pads missing channels with zeros);
- input pixels are ``(x - mean) / 256`` with dlib's per-channel means.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 150
EMBEDDING_DIM = 128
# dlib's input: (pixel - mean) / 256 with these means (R, G, B), written as the project's
# ``(x/255 - mean) / std`` so the pipeline's own preprocessing feeds it (``ModelSpec``).
_DLIB_MEAN = (122.782, 117.001, 104.298)
NORMALIZATION = {"mean": tuple(m / 255 for m in _DLIB_MEAN), "std": (256 / 255,) * 3}
# Where the pipeline's MTCNN landmarks fall on dlib's own 150-px chips (get_face_chip, padding
# 0.25, from dlib's 5-point predictor), averaged over 299 UTKFace chips and made symmetric
# (docs/experiments/2026-12-04-face-embedding.md): aligning our crops onto it gives the network
# the faces it was trained on.
CROP_TEMPLATE = ((47.4, 44.4), (101.6, 44.4), (74.5, 77.2), (50.2, 100.7), (98.8, 100.7))
# (channels, blocks, whether the first block downsamples) per stage, input to output.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


def _pad_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum over the larger shape, the smaller tensor zero-padded at the
    end of each axis."""
    c = max(a.shape[1], b.shape[1])
    h = max(a.shape[2], b.shape[2])
    w = max(a.shape[3], b.shape[3])

    def grow(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class Affine(nn.Module):
    """dlib's inference-time batch norm: ``gamma * x + beta`` per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class Block(nn.Module):
    """conv-affine-relu-conv-affine plus the shortcut, then relu; ``down`` halves the size
    (stride-2 unpadded convolution, 2x2 average-pooled shortcut)."""

    def __init__(self, c_in: int, c_out: int, down: bool):
        super().__init__()
        self.down = down
        stride, pad = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, pad)
        self.aff1 = Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.aff2 = Affine(c_out)

    def forward(self, x):
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_pad_add(y, shortcut))


class DlibFaceNet(nn.Module):
    """``image`` float32 [N, 3, 150, 150], RGB normalised as ``NORMALIZATION`` says → 128-D
    embedding, L2-normalised (dlib compares raw descriptors by Euclidean distance; on the unit
    sphere a cosine threshold does the same job and needs no scale)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, 2, 0)
        self.stem_aff = Affine(32)
        blocks, c_in = [], 32
        for c_out, n, down in STAGES:
            for i in range(n):
                blocks.append(Block(c_in, c_out, down and i == 0))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, EMBEDDING_DIM, bias=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem_aff(self.stem(image))), 3, 2)
        x = self.blocks(x).mean(dim=(2, 3))
        return F.normalize(self.fc(x), dim=1)


def _read_int(data: bytes, pos: int) -> tuple[int, int]:
    """dlib's integer encoding: a byte with the length (low 4 bits) and sign (0x80), then the
    magnitude's bytes, little-endian."""
    head = data[pos]
    n = head & 0x0F
    value = int.from_bytes(data[pos + 1 : pos + 1 + n], "little")
    return (-value if head & 0x80 else value), pos + 1 + n


def _read_tensor(data: bytes, pos: int) -> tuple[np.ndarray, int]:
    """A dlib tensor (serialisation version 2): four dimensions, then little-endian float32."""
    version, pos = _read_int(data, pos)
    if version != 2:
        raise ValueError(f"unsupported dlib tensor version {version}")
    dims = []
    for _ in range(4):
        d, pos = _read_int(data, pos)
        dims.append(d)
    n = int(np.prod(dims))
    values = np.frombuffer(data, dtype="<f4", count=n, offset=pos).copy()
    return values, pos + 4 * n


# Layers that carry weights, as dlib names them in the stream; each is followed by its params.
_LAYER = re.compile(rb"(con_4|affine_|fc_2)")


def read_dlib_params(path: str | Path) -> list[tuple[str, np.ndarray, tuple[int, ...]]]:
    """The weight layers of a dlib network file in input-to-output order (dlib serialises a
    network's sub-network before each layer): ``(kind, params, shape)`` with shape ``(filters,
    nr, nc)`` for a convolution, ``(outputs, inputs)`` for the linear layer."""
    data = Path(path).read_bytes()
    layers = []
    for m in _LAYER.finditer(data):
        if data[m.start() - 1] != len(m.group()):  # a name is stored after its length
            continue
        kind, pos = m.group().decode(), m.end()
        if kind == "fc_2":
            outputs, pos = _read_int(data, pos)
            inputs, pos = _read_int(data, pos)
            params, _ = _read_tensor(data, pos)
            layers.append(("fc", params, (outputs, inputs)))
            continue
        params, pos = _read_tensor(data, pos)
        if kind == "con_4":
            filters, pos = _read_int(data, pos)
            nr, pos = _read_int(data, pos)
            nc, _ = _read_int(data, pos)
            layers.append(("conv", params, (filters, nr, nc)))
        else:
            layers.append(("affine", params, (params.size // 2,)))
    return layers


def load_dlib_face_net(path: str | Path) -> DlibFaceNet:
    """The network with the weights of dlib's ``dlib_face_recognition_resnet_model_v1.dat``;
    raises ValueError when the file's layers do not fit the architecture."""
    net = DlibFaceNet()
    convs = [net.stem] + [c for b in net.blocks for c in (b.conv1, b.conv2)]
    affines = [net.stem_aff] + [a for b in net.blocks for a in (b.aff1, b.aff2)]
    layers = read_dlib_params(path)
    got = {k: [x for x in layers if x[0] == k] for k in ("conv", "affine", "fc")}
    if (len(got["conv"]), len(got["affine"]), len(got["fc"])) != (len(convs), len(affines), 1):
        raise ValueError(f"{path} is not dlib's face-recognition ResNet (layers do not match)")
    with torch.no_grad():
        for conv, (_, params, (filters, nr, nc)) in zip(convs, got["conv"], strict=True):
            w = conv.weight
            if (filters, nr, nc) != (w.shape[0], w.shape[2], w.shape[3]):
                raise ValueError(f"{path}: convolution shape {(filters, nr, nc)} != {w.shape}")
            w.copy_(torch.from_numpy(params[: w.numel()].reshape(w.shape)))
            conv.bias.copy_(torch.from_numpy(params[w.numel() :]))
        for aff, (_, params, (c,)) in zip(affines, got["affine"], strict=True):
            aff.gamma.copy_(torch.from_numpy(params[:c]))
            aff.beta.copy_(torch.from_numpy(params[c:]))
        _, params, (outputs, inputs) = got["fc"][0]
        # dlib keeps the matrix as (inputs, outputs); torch's Linear wants (outputs, inputs).
        net.fc.weight.copy_(torch.from_numpy(params.reshape(inputs, outputs).T.copy()))
    return net.eval()
