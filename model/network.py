"""The multi-task face network: a torchvision ResNet backbone and one head per task.

Heads are declared in the config as ``{name: number_of_classes}``; each is dropout + a linear
layer over the pooled backbone features, and ``forward`` returns ``{name: logits}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model.train_config import BACKBONES, ModelConfig


def build_backbone(
    name: str, width: float = 1.0, small_input: bool = False
) -> tuple[nn.Module, int]:
    """Return ``(module mapping NCHW images to [N, D] features, D)``; random initialisation.

    ``width`` scales every stage's channels (rounded to multiples of 8). ``small_input`` removes
    the first down-sampling step (the max-pool) for inputs well below 224 px: 4x the FLOPs.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}', choose one of {', '.join(BACKBONES)}")
    net = getattr(torchvision.models, name)(weights=None)
    if width != 1.0:
        net = _scale_resnet_width(net, width)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    if small_input:
        net.maxpool = nn.Identity()
    return net, dim


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


class MultiTaskNet(nn.Module):
    """Shared backbone + ``{head: Dropout -> Linear}``; ``forward`` returns ``{head: logits}``.
    The input comes normalised with the dataset mean and std (``model.training.to_input``)."""

    def __init__(
        self,
        backbone: str = "resnet18",
        heads: Mapping[str, int] | None = None,
        width: float = 1.0,
        dropout: float = 0.2,
        small_input: bool = False,
    ):
        super().__init__()
        heads = dict(heads or {"age": 101, "gender": 2})
        self.backbone, dim = build_backbone(backbone, width, small_input)
        self.feature_dim = dim
        self.head_classes = {k: int(v) for k, v in heads.items()}
        self.heads = nn.ModuleDict(
            {k: nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n)) for k, n in heads.items()}
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        return {name: head(features) for name, head in self.heads.items()}


class Ensemble(nn.Module):
    """Several trained networks answering as one: each head's output is the log of the mean
    class probabilities of the members that have that head, so a softmax of it gives that mean
    (what averaging does for accuracy; the expected age stays a mean over the averaged
    distribution). Members differ by seed or recipe; averaging removes the part of each one's
    error that is seed noise, which averaging one person's frames cannot. A member may have
    heads the others lack (a member trained on more label sets): those heads are its alone.

    ``mirrored_heads`` are read from each face and its mirror image (one batch of two per face
    for the members with such a head): a second reading for heads only one member has, where
    there is no other network to average with. It costs that member's FLOPs again; the other
    heads keep the plain face's reading."""

    def __init__(self, members: Sequence[nn.Module], mirrored_heads: Iterable[str] = ()):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        heads: dict[str, int] = {}
        for m in members:
            for name, n in m.head_classes.items():
                if heads.setdefault(name, n) != n:
                    raise ValueError(f"ensemble members differ in the classes of head {name}")
        self.mirrored_heads = tuple(mirrored_heads)
        unknown = sorted(set(self.mirrored_heads) - set(heads))
        if unknown:
            raise ValueError(f"no member has the head(s) to mirror: {', '.join(unknown)}")
        self.members = nn.ModuleList(members)
        self.head_classes = heads

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [self._read(m, x) for m in self.members]
        return {
            head: mean_probabilities([o for o in outs if head in o], [head])[head]
            for head in self.head_classes
        }

    def _read(self, member: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The member's logits; for mirrored heads, the log mean probabilities of the face and
        its mirror."""
        mirrored = [h for h in self.mirrored_heads if h in member.head_classes]
        if not mirrored:
            return member(x)
        both = member(torch.cat([x, x.flip(3)]))
        n = x.shape[0]
        out = {h: v[:n] for h, v in both.items()}
        for h in mirrored:
            out[h] = mean_probabilities([{h: both[h][:n]}, {h: both[h][n:]}], [h])[h]
        return out


def average_weights(state_dicts: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One network's weights as the mean of several (a "model soup", Wortsman et al. 2022).
    Only for networks fine-tuned from one start: they stay in one basin of the loss, where the
    mean usually scores as well as the best of them or better; the weights of independently
    trained networks average to noise. Integer buffers (batch counts) come from the first."""
    first = state_dicts[0]
    if any(set(sd) != set(first) for sd in state_dicts[1:]):
        raise ValueError("the networks have different layers")
    return {
        k: torch.stack([sd[k].double() for sd in state_dicts]).mean(0).to(v.dtype)
        if v.is_floating_point()
        else v.clone()
        for k, v in first.items()
    }


def mean_probabilities(
    outs: Sequence[Mapping[str, torch.Tensor]], heads: Iterable[str]
) -> dict[str, torch.Tensor]:
    """Each head's logits from several readings as the log of their mean class probabilities."""
    log_n = math.log(len(outs))
    return {
        h: torch.logsumexp(torch.stack([torch.log_softmax(o[h], 1) for o in outs]), 0) - log_n
        for h in heads
    }


def build_model(cfg: ModelConfig) -> MultiTaskNet:
    """Build from the ``model:`` section of the training config."""
    return MultiTaskNet(cfg.backbone, cfg.heads, cfg.width, cfg.dropout, cfg.small_input)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: int) -> int:
    """FLOPs of one forward pass for one face (multiply-add counted as 2), via FlopCounterMode."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, input_size, input_size, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())
