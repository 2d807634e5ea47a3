"""Networks rebuilt from an exported file (model/onnx_import.py, jobs/dev/unpack.py): the norms
export folded into the convolutions come back out, the function stays the file's."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the train extra (make install-train)")

from jobs.dev import unpack  # noqa: E402
from model.network import Ensemble, MultiTaskNet  # noqa: E402
from model.onnx_export import export_onnx  # noqa: E402
from model.onnx_import import folded_members, load_folded, unfold  # noqa: E402
from schemas.model_file import ModelSpec  # noqa: E402

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


def _export(model, path: Path, mirrored_heads: str = "") -> ModelSpec:
    spec = ModelSpec(
        input_size=32,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        crop_template=((10.0, 12.0), (22.0, 12.0), (16.0, 18.0), (11.0, 24.0), (21.0, 24.0)),
        heads={h: [str(i) for i in range(n)] for h, n in HEADS.items()},
        model_version="test",
        license="test",
        extra={"mirrored_heads": mirrored_heads} if mirrored_heads else {},
    )
    export_onnx(model, spec, path)
    return spec


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


def test_load_folded_refuses_a_network_the_weights_do_not_fit(tmp_path):
    path = tmp_path / "model.onnx"
    _export(_net(0), path)
    folded = folded_members(str(path))[0]
    with pytest.raises(ValueError, match="in the file, .* in the network"):
        load_folded(MultiTaskNet("resnet18", HEADS, width=0.25), folded)  # wider layers
    with pytest.raises(ValueError, match="not in the file"):
        load_folded(MultiTaskNet("resnet34", HEADS, width=0.125), folded)  # more layers
    with pytest.raises(ValueError, match="fit no layer"):
        load_folded(MultiTaskNet("resnet18", {"age": 101, "gender": 2}, width=0.125), folded)


def test_the_check_against_the_file_refuses_members_that_compute_something_else(tmp_path):
    path = tmp_path / "model.onnx"
    spec = _export(Ensemble([_net(0), _net(1)]), path)
    x = torch.randn(16, 3, 32, 32)
    assert unpack._check_against_file([_net(0), _net(1)], spec, str(path), x) < 1e-4
    with pytest.raises(unpack.UserError, match="differ from"):
        unpack._check_against_file([_net(0), _net(2)], spec, str(path), x)


@pytest.mark.parametrize("members", [1, 2])
def test_a_file_that_reads_a_head_from_the_mirror_image_unpacks_to_its_members(tmp_path, members):
    path = tmp_path / "model.onnx"
    nets = [_net(seed) for seed in range(members)]
    spec = _export(Ensemble(nets, mirrored_heads=["mask"]), path, "mask")
    folded = folded_members(str(path))
    assert sorted(folded) == list(range(members))  # the mirror reading adds no member
    rebuilt = []
    for weights in folded.values():
        rebuilt.append(MultiTaskNet("resnet18", HEADS, width=0.125).eval())
        load_folded(rebuilt[-1], weights)
    x = torch.randn(16, 3, 32, 32)
    assert unpack._check_against_file(rebuilt, spec, str(path), x) < unpack.TOLERANCE
    plain = dataclasses.replace(spec, extra={})  # the same members read without the mirror
    with pytest.raises(unpack.UserError, match="differ from"):
        unpack._check_against_file(rebuilt, plain, str(path), x)


def test_unpack_refuses_what_it_cannot_unpack_in_one_line(tmp_path, capsys):
    from onnxruntime.quantization import quantize_dynamic

    fp32, int8 = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    _export(_net(0), fp32)
    quantize_dynamic(str(fp32), str(int8))
    run = tmp_path / "run"
    cases = {
        str(ROOT / "README.md"): "cannot be unpacked",
        str(ROOT / "model" / "weights" / "face_embedding.onnx"): "not an age/gender face model",
        str(int8): "INT8 file cannot be unpacked",
    }
    for model, message in cases.items():
        assert unpack.main(["--model", model, "--data", "x", "--member", str(run)]) == 2
        assert message in capsys.readouterr().err
    argv = ["--model", str(fp32), "--data", str(tmp_path / "absent")]
    assert unpack.main([*argv, "--member", str(run), "--member", f"{run}:glasses"]) == 2
    assert "a folder of its own" in capsys.readouterr().err
    assert unpack.main([*argv, "--member", f"{run}:nosuch"]) == 2
    assert "no variant 'nosuch'" in capsys.readouterr().err
    # Recipes that cannot be this member's are refused before any face is read.
    overlay = tmp_path / "overlay.yaml"
    fits = {
        "loss": "{weights: {age: 1, gender: 1, mask: 1}}",
        "data": "{input_size: 32, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}",
        "model": "{heads: {age: 101, gender: 2, mask: 3}, width: 0.125}",
    }
    refusals = {
        "prepares faces as": {**fits, "data": "{input_size: 80}"},
        "the recipe's network is not the member's": {  # the defaults' width, 0.5
            **fits,
            "model": "{heads: {age: 101, gender: 2, mask: 3}}",
        },
        "data not found": fits,  # the recipe fits: the missing faces are next
    }
    for message, sections in refusals.items():
        overlay.write_text("".join(f"{k}: {v}\n" for k, v in sections.items()))
        assert unpack.main([*argv, "--config", str(overlay), "--member", str(run)]) == 2
        assert message in capsys.readouterr().err
    assert not run.exists()


@pytest.mark.skipif(not (SHARED / "UTKFace-dev.tar.gz").is_file(), reason="shared data absent")
def test_unpack_rebuilds_the_shipped_members_as_run_folders(tmp_path, capsys):
    runs = [tmp_path / "ft", tmp_path / "g30", tmp_path / "mt"]
    argv = ["--model", str(SHIPPED), "--data", str(SHARED / "UTKFace-dev.tar.gz")]
    members = [str(runs[0]), f"{runs[1]}:glasses", f"{runs[2]}:multitask_weighted"]
    # A member given a recipe with other heads is refused before anything is written.
    wrong = [*argv, "--member", members[0], "--member", members[2], "--member", members[1]]
    assert unpack.main(wrong) == 2
    assert "name the variant it was trained with" in capsys.readouterr().err
    assert not any(r.exists() for r in runs)
    assert unpack.main([*argv, *(a for m in members for a in ("--member", m))]) == 0
    report = json.loads(capsys.readouterr().out)
    assert all(r["unfold_max_abs_change"] < 1e-4 for r in report["members"].values())
    assert report["max_abs_difference_from_file"] < 1e-3
    assert report["export_with"] == {"mirror_heads": "emotion,mask"}
    ckpts = [torch.load(r / "final.pt", weights_only=False) for r in runs]
    assert [c["n_train"] for c in ckpts] == [18641, 18641, 50280]
    assert [len(c["data"]) for c in ckpts] == [1, 1, 3]
    # Loaded as training and export load them, the three networks averaged as the file
    # averages them (emotion and mask also read from the mirror image) give every output of the
    # file.
    from model.onnx_export import load_checkpoint, parity

    nets = [load_checkpoint(r / "final.pt")[0] for r in runs]
    model = Ensemble(nets, mirrored_heads=["emotion", "mask"]).eval()
    x = np.random.default_rng(0).standard_normal((8, 3, 80, 80)).astype(np.float32)
    differences = parity(model, SHIPPED, x)
    assert set(differences) >= {"age", "gender_prob", "mask_logits", "emotion_logits"}
    assert max(differences.values()) < 1e-3
    # A second unpack into the same folders is refused: run folders are not overwritten.
    before = (runs[0] / "final.pt").stat().st_mtime_ns
    assert unpack.main([*argv, *(a for m in members for a in ("--member", m))]) == 2
    assert "exists" in capsys.readouterr().err
    assert (runs[0] / "final.pt").stat().st_mtime_ns == before
