"""Networks rebuilt from an exported file (model/onnx_import.py, jobs/dev/unpack.py): the norms
export folded into the convolutions come back out, the function stays the file's."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch", reason="needs the train extra (make install-train)")

from jobs.dev import unpack  # noqa: E402
from model.network import Ensemble, MultiTaskNet  # noqa: E402
from model.onnx_export import export_onnx  # noqa: E402
from model.onnx_import import folded_members, load_folded, unfold  # noqa: E402
from schemas.model_file import INPUT_NAME, ModelSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "model" / "weights" / "age_gender.onnx"
SHARED = ROOT.parent / "shared" / "data"
HEADS = {"age": 101, "gender": 2, "mask": 3}


def _net(seed: int) -> MultiTaskNet:
    """A small network whose norms are far from identities, as a trained one's are."""
    torch.manual_seed(seed)
    net = MultiTaskNet("resnet18", HEADS, width=0.125)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.2, 3)
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


def _export(model, path: Path) -> None:
    spec = ModelSpec(
        input_size=32,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        crop_template=((10.0, 12.0), (22.0, 12.0), (16.0, 18.0), (11.0, 24.0), (21.0, 24.0)),
        heads={h: [str(i) for i in range(n)] for h, n in HEADS.items()},
        model_version="test",
        license="test",
    )
    export_onnx(model, spec, path)


@pytest.mark.parametrize("members", [1, 2])
def test_a_rebuilt_network_computes_the_files_function_before_and_after_unfolding(
    tmp_path, members
):
    nets = [_net(seed) for seed in range(members)]
    path = tmp_path / "model.onnx"
    _export(nets[0] if members == 1 else Ensemble(nets), path)
    folded = folded_members(str(path))
    assert sorted(folded) == list(range(members))
    x = torch.randn(64, 3, 32, 32)
    for net, weights in zip(nets, folded.values(), strict=True):
        rebuilt = MultiTaskNet("resnet18", HEADS, width=0.125).eval()
        load_folded(rebuilt, weights)
        with torch.no_grad():
            want = net(x)
            assert all(torch.allclose(rebuilt(x)[h], want[h], atol=1e-4) for h in HEADS)
            unfold(rebuilt, x.split(16))
            assert all(torch.allclose(rebuilt.eval()(x)[h], want[h], atol=1e-4) for h in HEADS)
            # Each convolution's outputs now have unit variance, as its norm's statistics say.
            spread = rebuilt.backbone.conv1(x).transpose(0, 1).flatten(1).std(1)
        assert torch.allclose(spread, torch.ones_like(spread), atol=0.02)


@pytest.mark.skipif(not (SHARED / "UTKFace-dev.tar.gz").is_file(), reason="shared data absent")
def test_unpack_rebuilds_the_shipped_members_as_run_folders(tmp_path, capsys):
    runs = [tmp_path / "ft", tmp_path / "g30", tmp_path / "mtm"]
    argv = ["--model", str(SHIPPED), "--data", str(SHARED / "UTKFace-dev.tar.gz")]
    members = [str(runs[0]), f"{runs[1]}:glasses", f"{runs[2]}:multitask_masks"]
    assert unpack.main([*argv, *(a for m in members for a in ("--member", m))]) == 0
    report = json.loads(capsys.readouterr().out)
    assert all(r["unfold_max_abs_logit_change"] < 1e-4 for r in report.values())
    ckpts = [torch.load(r / "final.pt", weights_only=False) for r in runs]
    assert [c["n_train"] for c in ckpts] == [18641, 18641, 50280]
    # The three rebuilt networks, averaged as the file averages them, read faces as the file.
    from model.onnx_export import load_checkpoint

    model = Ensemble([load_checkpoint(r / "final.pt")[0] for r in runs]).eval()
    x = np.random.default_rng(0).standard_normal((8, 3, 80, 80)).astype(np.float32)
    session = ort.InferenceSession(str(SHIPPED), providers=["CPUExecutionProvider"])
    mask, emotion = session.run(["mask_logits", "emotion_logits"], {INPUT_NAME: x})
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    np.testing.assert_allclose(out["mask"].numpy(), mask, atol=1e-3)
    np.testing.assert_allclose(out["emotion"].numpy(), emotion, atol=1e-3)
    # A variant whose heads are not the member's is refused in one line.
    bad = [*argv, "--member", str(runs[0]), "--member", str(runs[1]), "--member", str(runs[2])]
    assert unpack.main(bad) == 2
    assert "name the variant it was trained with" in capsys.readouterr().err
