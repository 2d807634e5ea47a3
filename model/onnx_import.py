"""The networks of an exported model file back as PyTorch modules, to train them on.

Run folders (``final.pt``) are not shipped; the ONNX file is. Export folds each batch norm into
the convolution before it (``z = W x`` then ``(z - m) / s * g + b`` becomes ``W' x + c``), so a
file holds every function the network computes but not the split into convolution and norm that
training needs. ``unfold`` restores that split without changing what the network computes:
each convolution gets ``W' / s_z`` and its norm a mean ``m_z / s_z``, a variance of one, a gain
``s_z`` and a bias ``m_z + c``, where ``m_z`` and ``s_z`` are the per-channel mean and deviation
of ``W' x`` on real faces. In eval mode the network is exactly the file's; in training mode its
norms see batch statistics close to those they hold, so training resumes smoothly.

Weights come back as the file stores them (FP16 where the file was written with
``--half-weights``); the original run's optimiser state and exact norm statistics are gone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from model.network import MultiTaskNet

# Node names of torch.onnx.export: "/model[/members.K]/backbone/<modules>/Conv" and
# "/model[/members.K]/<head>/<head>.1/Gemm".
_CONV = re.compile(r"^/model/(?:members\.(\d+)/)?backbone/(.+)/Conv$")
_GEMM = re.compile(r"^/model/(?:members\.(\d+)/)?(\w+)/\2\.(\d+)/Gemm$")


def _tensors(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every constant of the graph as float32: initialisers, and initialisers behind a Cast
    (FP16 storage) under the Cast's output name."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
        elif node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return {k: np.array(v, np.float32) for k, v in values.items()}  # writable copies


def _module_path(scopes: str) -> str:
    """ "layer2/layer2.0/downsample/downsample.0" -> "layer2.0.downsample.0": a scope inside a
    container repeats the container's name."""
    parts, previous = [], ""
    for scope in scopes.split("/"):
        inside = previous and scope.startswith(previous + ".")
        parts.append(scope[len(previous) + 1 :] if inside else scope)
        previous = scope
    return ".".join(parts)


def _norm_after(conv: str) -> str:
    """The batch norm that follows a torchvision ResNet convolution."""
    if conv.endswith("downsample.0"):
        return conv[: -len("0")] + "1"
    return re.sub(r"conv(\d)$", r"bn\1", conv)


def folded_members(model: str | onnx.ModelProto) -> dict[int, dict[str, np.ndarray]]:
    """Per member (0 for a single network), its folded weights by module path:
    "backbone.layer1.0.conv1.weight"/".bias" and "heads.age.1.weight"/".bias". ValueError for
    a file without them (a quantised file keeps integer weights behind other operators)."""
    graph = (onnx.load(model) if isinstance(model, str) else model).graph
    values = _tensors(graph)
    members: dict[int, dict[str, np.ndarray]] = {}
    for node in graph.node:
        conv, gemm = _CONV.match(node.name), _GEMM.match(node.name)
        if node.op_type == "Conv" and conv:
            k, name = int(conv.group(1) or 0), "backbone." + _module_path(conv.group(2))
        elif node.op_type == "Gemm" and gemm:
            k, name = int(gemm.group(1) or 0), f"heads.{gemm.group(2)}.{gemm.group(3)}"
        else:
            continue
        if node.input[1] not in values or len(node.input) < 3 or node.input[2] not in values:
            raise ValueError(f"the weights of {node.name} are not constants of the file")
        weights = members.setdefault(k, {})
        weights[name + ".weight"] = values[node.input[1]]
        weights[name + ".bias"] = values[node.input[2]]
    if not members:
        raise ValueError(
            "no floating-point convolutions of a network (an INT8 file cannot be unpacked)"
        )
    return members


def load_folded(net: MultiTaskNet, folded: dict[str, np.ndarray]) -> None:
    """Put folded weights into ``net`` with every norm an identity (mean 0, variance 1 - eps,
    gain 1) carrying the folded bias: in eval mode ``net`` computes the file's function.
    ValueError unless every convolution and linear layer of ``net`` gets weights of its shape
    and every weight finds its layer (another backbone or stem than the file's)."""
    _check_coverage(net, folded)
    modules = dict(net.named_modules())
    with torch.no_grad():
        for key, value in folded.items():
            name, kind = key.rsplit(".", 1)
            if name.startswith("heads."):
                getattr(modules[name], kind).copy_(torch.from_numpy(value))
            elif kind == "weight":
                modules[name].weight.copy_(torch.from_numpy(value))
            else:
                norm = modules[_norm_after(name)]
                norm.running_mean.zero_()
                norm.running_var.fill_(1.0 - norm.eps)
                norm.weight.fill_(1.0)
                norm.bias.copy_(torch.from_numpy(value))


def _check_coverage(net: MultiTaskNet, folded: dict[str, np.ndarray]) -> None:
    """The folded weights and ``net``'s convolutions and linear layers match one to one."""
    shapes = {}
    for name, m in net.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            shapes[name + ".weight"] = tuple(m.weight.shape)
            shapes[name + ".bias"] = (m.weight.shape[0],)
    missing = sorted(set(shapes) - set(folded))
    unknown = sorted(set(folded) - set(shapes))
    wrong = sorted(k for k in set(shapes) & set(folded) if folded[k].shape != shapes[k])
    if missing:
        raise ValueError(
            f"{len(missing)} weights of the network are not in the file ({missing[0]}, ...)"
        )
    if unknown:
        raise ValueError(
            f"{len(unknown)} weights of the file fit no layer of the network ({unknown[0]}, ...)"
        )
    if wrong:
        k = wrong[0]
        raise ValueError(f"{k} is {folded[k].shape} in the file, {shapes[k]} in the network")


def unfold(net: MultiTaskNet, batches: Iterable[torch.Tensor]) -> None:
    """Split each folded convolution back into a convolution and a norm with the statistics of
    its outputs on ``batches`` (model inputs), keeping ``net``'s eval-mode function."""
    sums: dict[str, list] = {}
    convs = {
        n: m
        for n, m in net.named_modules()
        if isinstance(m, nn.Conv2d) and n.startswith("backbone")
    }

    def hook(name):
        def record(_module, _inputs, output):
            z = output.detach().double().transpose(0, 1).flatten(1)
            s = sums.setdefault(name, [0, 0.0, 0.0])
            s[0] += z.shape[1]
            s[1] = s[1] + z.sum(1)
            s[2] = s[2] + (z * z).sum(1)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in convs.items()]
    net.eval()
    with torch.no_grad():
        for x in batches:
            net(x)
    for h in handles:
        h.remove()
    modules = dict(net.named_modules())
    with torch.no_grad():
        for name, conv in convs.items():
            count, total, squares = sums[name]
            mean = total / count
            std = torch.sqrt(torch.clamp(squares / count - mean * mean, min=1e-8))
            norm = modules[_norm_after(name)]
            conv.weight.div_(std.float().view(-1, 1, 1, 1))
            norm.running_mean.copy_((mean / std).float())
            norm.weight.copy_(std.float())
            norm.bias.add_(mean.float())
