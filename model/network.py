"""The multi-task face network: a torchvision backbone chosen by config and one head per task.

Heads are declared in the config as ``{name: number_of_classes}``; each is dropout + a linear
layer over the pooled backbone features, and ``forward`` returns ``{name: logits}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import cv2
import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models import efficientnet as tv_efficientnet

from model.dlib_nets import FEATURES as DLIB_FEATURES
from model.dlib_nets import DlibAgeGender, load_dlib_weights

BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_b1",
    "dlib_age_gender",
)
# backbones with pretrained weights that a training can start from (config model.pretrained)
PRETRAINED = ("dlib_age_gender",)


def build_backbone(
    name: str, width: float = 1.0, small_input: bool = False
) -> tuple[nn.Module, int]:
    """Return ``(module mapping NCHW images to [N, D] features, D)``; random initialisation.

    ``width`` is the width multiplier (MobileNetV3 and EfficientNet natively; for ResNets every
    stage's channels are scaled, rounded to multiples of 8). ``small_input`` removes the first
    down-sampling step (ResNet max-pool, stride of the stem conv elsewhere) for inputs well below
    224 px: 4x the FLOPs.
    """
    if name.startswith("resnet"):
        net = getattr(torchvision.models, name)(weights=None)
        if width != 1.0:
            net = _scale_resnet_width(net, width)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        if small_input:
            net.maxpool = nn.Identity()
        return net, dim
    if name.startswith("mobilenet_v3"):
        net = getattr(torchvision.models, name)(weights=None, width_mult=width)
        dim = net.classifier[0].in_features
        if small_input:
            net.features[0][0].stride = (1, 1)
        return nn.Sequential(net.features, net.avgpool, nn.Flatten(1)), dim
    if name == "dlib_age_gender":
        if width != 1.0 or small_input:
            raise ValueError(f"{name} has a fixed shape: width 1.0, small_input false")
        return DlibAgeGender(), DLIB_FEATURES
    if name.startswith("efficientnet_b"):
        depth = {"efficientnet_b0": 1.0, "efficientnet_b1": 1.1}[name]
        setting, last = tv_efficientnet._efficientnet_conf(name, width_mult=width, depth_mult=depth)
        net = tv_efficientnet.EfficientNet(setting, dropout=0.0, last_channel=last)
        dim = net.classifier[1].in_features
        if small_input:
            net.features[0][0].stride = (1, 1)
        return nn.Sequential(net.features, net.avgpool, nn.Flatten(1)), dim
    raise ValueError(f"unknown backbone '{name}', choose one of {', '.join(BACKBONES)}")


def _scale_resnet_width(net: torchvision.models.ResNet, width: float) -> nn.Module:
    """Rebuild a torchvision ResNet with every stage's channels scaled by ``width`` (rounded to a
    multiple of 8), reusing torchvision's own block and layer builders."""
    block = type(net.layer1[0])
    depths = [len(net.layer1), len(net.layer2), len(net.layer3), len(net.layer4)]
    ch = [max(8, int(round(c * width / 8)) * 8) for c in (64, 128, 256, 512)]
    net.inplanes = ch[0]
    net.conv1 = nn.Conv2d(3, ch[0], kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(ch[0])
    net.layer1 = net._make_layer(block, ch[0], depths[0])
    net.layer2 = net._make_layer(block, ch[1], depths[1], stride=2)
    net.layer3 = net._make_layer(block, ch[2], depths[2], stride=2)
    net.layer4 = net._make_layer(block, ch[3], depths[3], stride=2)
    net.fc = nn.Linear(ch[3] * block.expansion, 1)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


INPUT_NORMS = ("fixed", "per_image")


class PerImageStandardize(nn.Module):
    """Shift and scale each image to zero mean and unit standard deviation over all its pixels
    and channels. Video face crops have a third to half the contrast of the training photos
    (pixel standard deviation 0.07-0.14 against a median of 0.22 on UTKFace, in [0, 1] units),
    so a network that sees every face at the same contrast cannot read exposure as a cue.
    Colour balance between channels is kept. Part of the network, so it is in the ONNX graph and
    every runtime applies it the same way."""

    def __init__(self, min_std: float = 0.05):
        # in the units of the network's input (after the dataset mean/std): 0.0125 in [0, 1]
        # pixel units for the shipped std of 0.25, far below any real face's contrast
        super().__init__()
        self.min_std = min_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (x - mean) / std.clamp(min=self.min_std)


class MultiTaskNet(nn.Module):
    """Shared backbone + ``{head: Dropout -> Linear}``; ``forward`` returns ``{head: logits}``.

    ``input_norm``: ``fixed`` feeds the backbone the input as it comes (normalised with the
    dataset mean and std by the caller); ``per_image`` first standardises each image on its own
    (``PerImageStandardize``)."""

    def __init__(
        self,
        backbone: str = "resnet18",
        heads: Mapping[str, int] | None = None,
        width: float = 1.0,
        dropout: float = 0.2,
        small_input: bool = False,
        input_norm: str = "fixed",
    ):
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"unknown input_norm '{input_norm}', choose one of {INPUT_NORMS}")
        heads = dict(heads or {"age": 101, "gender": 2})
        self.input_norm = PerImageStandardize() if input_norm == "per_image" else nn.Identity()
        self.backbone, dim = build_backbone(backbone, width, small_input)
        self.feature_dim = dim
        self.head_classes = {k: int(v) for k, v in heads.items()}
        self.heads = nn.ModuleDict(
            {k: nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n)) for k, n in heads.items()}
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(self.input_norm(x))
        return {name: head(features) for name, head in self.heads.items()}


def area_matrix(src: int, dst: int) -> np.ndarray:
    """[dst, src] weights of OpenCV's area resampling of ``src`` pixels to ``dst`` (the kind of
    resampling that makes the training chips, ``model.preprocess``): resizing an image is
    ``A @ image @ A.T`` per channel."""
    return cv2.resize(np.eye(src, dtype=np.float64), (src, dst), interpolation=cv2.INTER_AREA)


class OtherInput(nn.Module):
    """A network that was trained on another input size or normalisation than the ensemble's
    input: converts the input in the graph (per-channel affine, then area resampling), so
    networks of different recipes can be averaged in one file with one preprocessing. A 64 px
    member of an 80 px file sees its faces resampled twice (frame -> 80 -> 64 px) where it
    trained on chips resampled once; the file's own figures measure what that costs."""

    def __init__(self, member: nn.Module, source: tuple, target: tuple):
        """``source`` and ``target``: ``(size, mean, std)`` of the ensemble's input and of the
        member's (mean and std of x / 255, per channel)."""
        super().__init__()
        (src, mean0, std0), (dst, mean1, std1) = source, target
        mean0, std0, mean1, std1 = (
            torch.tensor(v, dtype=torch.float32) for v in (mean0, std0, mean1, std1)
        )
        self.member = member
        self.head_classes = member.head_classes
        self.register_buffer("scale", (std0 / std1).view(1, 3, 1, 1))
        self.register_buffer("shift", ((mean0 - mean1) / std1).view(1, 3, 1, 1))
        self.register_buffer("resample", torch.from_numpy(area_matrix(src, dst)).float())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x * self.scale + self.shift
        x = self.resample @ x @ self.resample.T
        return self.member(x)


class Ensemble(nn.Module):
    """Several trained networks with the same heads, answering as one: each head's output is
    the log of the members' mean class probabilities, so a softmax of it gives that mean (what
    averaging does for accuracy, and the expected age stays a mean over the averaged
    distribution). Members differ by seed or recipe; averaging removes the part of each one's
    error that is seed noise, which averaging one person's frames cannot."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        heads = dict(members[0].head_classes)
        for m in members[1:]:
            if dict(m.head_classes) != heads:
                raise ValueError(f"ensemble members differ in heads: {m.head_classes} vs {heads}")
        self.members = nn.ModuleList(members)
        self.head_classes = heads

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return mean_probabilities([m(x) for m in self.members], self.head_classes)


class FlipAverage(nn.Module):
    """A network that reads each face and its mirror image in one batch and answers with the
    mean of the two readings' class probabilities (test-time flip averaging: twice the compute
    per face). Sound only with a left-right symmetric crop template, which export estimates."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.head_classes = dict(net.head_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n = x.shape[0]
        both = self.net(torch.cat([x, torch.flip(x, dims=[3])]))
        views = [{h: o[:n] for h, o in both.items()}, {h: o[n:] for h, o in both.items()}]
        return mean_probabilities(views, self.head_classes)


def mean_probabilities(
    outs: Sequence[Mapping[str, torch.Tensor]], heads: Iterable[str]
) -> dict[str, torch.Tensor]:
    """Each head's logits from several readings as the log of their mean class probabilities."""
    log_n = math.log(len(outs))
    return {
        h: torch.logsumexp(torch.stack([torch.log_softmax(o[h], 1) for o in outs]), 0) - log_n
        for h in heads
    }


def model_options(cfg: Mapping) -> dict:
    """The ``model:`` section of a training config with its defaults filled in: two sections
    build the same network exactly when these are equal."""
    return {
        "backbone": cfg.get("backbone", "resnet18"),
        "heads": dict(cfg.get("heads", {"age": 101, "gender": 2})),
        "width": float(cfg.get("width", 1.0)),
        "dropout": float(cfg.get("dropout", 0.2)),
        "small_input": bool(cfg.get("small_input", False)),
        "input_norm": str(cfg.get("input_norm", "fixed")),
    }


def build_model(cfg: Mapping) -> MultiTaskNet:
    """Build from the ``model:`` section of the training config."""
    return MultiTaskNet(**model_options(cfg))


def load_pretrained(model: MultiTaskNet, backbone: str) -> str:
    """Put pretrained weights into ``model``'s backbone, and into its age and gender heads where
    the source has classifiers for them; returns where they came from, for the run's log."""
    if backbone not in PRETRAINED:
        raise ValueError(f"no pretrained weights for backbone '{backbone}' (only {PRETRAINED})")
    heads = {name: model.heads[name][-1] for name in ("age", "gender") if name in model.heads}
    return load_dlib_weights(model.backbone, heads.get("age"), heads.get("gender"))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: int) -> int:
    """FLOPs of one forward pass for one face (multiply-add counted as 2), via FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, input_size, input_size, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())
