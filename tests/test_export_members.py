"""jobs.export of several runs: an ensemble (their probabilities averaged in the file), a member
that is the mean of fine-tunes' weights, and heads read from the mirror image too."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from schemas.model_file import INPUT_NAME, ModelSpec

torch = pytest.importorskip("torch", reason="needs the train extra (make install-train)")

# Imported after the skip: these modules import torch.
from test_model_export import SHARED, TINY, _train  # noqa: E402

from model.network import count_flops  # noqa: E402
from model.onnx_export import load_checkpoint  # noqa: E402


def _tiny_run(folder: Path, run: Path, seed: int, size: int = 32) -> Path:
    cfg = {**TINY, "seed": seed, "data": {**TINY["data"], "input_size": size}}
    return _train(cfg, folder, run)


def _real_chips_folder(folder: Path, n: int) -> Path:
    """The first ``n`` UTKFace chips, under their own names (the detector must find faces on
    them for the crop template)."""
    import tarfile

    folder.mkdir()
    with tarfile.open(SHARED / "UTKFace-dev.tar.gz") as tar:
        for member in tar:
            if (
                member.isfile()
                and member.name.endswith(".chip.jpg")
                and member.name.count("_") == 3
            ):
                (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
                n -= 1
                if n == 0:
                    break
    return folder


@pytest.mark.skipif(not (SHARED / "UTKFace-dev.tar.gz").is_file(), reason="shared data absent")
def test_export_cli_ensemble_with_half_weights(tmp_path, capsys):
    from jobs import export

    folder = _real_chips_folder(tmp_path / "UTKFace", 40)
    runs = [_tiny_run(folder, tmp_path / f"seed{s}", seed=s) for s in (0, 1)]
    capsys.readouterr()  # the training logs
    out = tmp_path / "ensemble.onnx"
    args = ["--data", str(folder), "--out", str(out), "--no-bench", "--template-samples", "30"]
    assert export.main([*args, "--run", str(runs[0]), "--run", str(runs[1]), "--half-weights"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["members"] == [str(r) for r in runs] and report["parity_ok"]
    assert json.loads((tmp_path / "seed0+seed1" / "export.json").read_text()) == report
    # FP16 storage: about half of the two members' FP32 weights (4 bytes per parameter)
    assert report["size_mb"] * 2**20 < 0.6 * 4 * report["params"]

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    spec = ModelSpec.from_metadata(sess.get_modelmeta().custom_metadata_map)
    assert spec.extra["architecture"].startswith("ensemble of 2 (mean probabilities): 2 x resnet18")
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    age, prob = sess.run(["age", "gender_prob"], {INPUT_NAME: x})
    members = [load_checkpoint(r / "final.pt")[0] for r in runs]
    with torch.no_grad():
        probs = [torch.softmax(m(torch.from_numpy(x))["gender"], 1)[:, 1] for m in members]
        ages = [torch.softmax(m(torch.from_numpy(x))["age"], 1) for m in members]
    want_age = (((ages[0] + ages[1]) / 2) * torch.arange(101)).sum(1).numpy()
    assert prob == pytest.approx(((probs[0] + probs[1]) / 2).numpy(), abs=2e-3)
    assert age == pytest.approx(want_age, abs=0.05)

    # Members must share the file's input: a member trained at another size is refused.
    other = _tiny_run(folder, tmp_path / "other-size", seed=2, size=24)
    capsys.readouterr()
    out_args = ["--data", str(folder), "--out", str(tmp_path / "mixed.onnx"), "--no-bench"]
    code = export.main([*out_args, "--run", str(runs[0]), "--run", str(other)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "in input_size (24 vs 32)" in err
    ckpt = torch.load(other / "final.pt", weights_only=False)
    first = torch.load(runs[0] / "final.pt", weights_only=False)
    ckpt.update(input_size=32, std=[0.5] * 3, state_dict=first["state_dict"])
    torch.save(ckpt, other / "final.pt")
    code = export.main([*out_args, "--run", str(runs[0]), "--run", str(other)])
    assert code == 2 and "in std ([0.5, 0.5, 0.5] vs [0.25, 0.25, 0.25])" in capsys.readouterr().err

    # Members must share the validation split (and the crop): one file, one split.
    ckpt = torch.load(other / "final.pt", weights_only=False)
    ckpt.update(std=[0.25] * 3, split={**ckpt["split"], "val_fraction": 0.5})
    torch.save(ckpt, other / "final.pt")
    code = export.main([*out_args, "--run", str(runs[0]), "--run", str(other)])
    assert code == 2 and "split" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "UTKFace-dev.tar.gz").is_file(), reason="shared data absent")
def test_export_cli_averages_the_weights_of_fine_tunes_and_mirrors_heads(tmp_path, capsys):
    from jobs import export

    folder = _real_chips_folder(tmp_path / "UTKFace", 40)
    start = _tiny_run(folder, tmp_path / "start", seed=0)
    init = ("--init", str(start / "final.pt"))
    tunes = [_train({**TINY, "seed": s}, folder, tmp_path / f"tune{s}", *init) for s in (1, 2)]
    capsys.readouterr()  # the training logs
    out = tmp_path / "soup.onnx"
    args = ["--data", str(folder), "--out", str(out), "--no-bench", "--template-samples", "30"]
    soup = f"{tunes[0]},{tunes[1]}"
    assert export.main([*args, "--run", soup, "--mirror-heads", "gender"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["members"] == [soup] and report["parity_ok"]
    assert (tmp_path / "tune1,tune2" / "export.json").is_file()
    one = load_checkpoint(tunes[0] / "final.pt")[0]
    assert report["flops_per_face"] == 2 * count_flops(one, 32)  # the face and its mirror
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    spec = ModelSpec.from_metadata(sess.get_modelmeta().custom_metadata_map)
    assert spec.extra["mirrored_heads"] == "gender"
    # The file computes one network with the mean weights, gender read from both images.
    nets = [load_checkpoint(r / "final.pt")[0] for r in tunes]
    mean = {k: (v + nets[1].state_dict()[k]) / 2 for k, v in nets[0].state_dict().items()}
    one.load_state_dict({k: v.to(nets[0].state_dict()[k].dtype) for k, v in mean.items()})
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype("f4"))
    with torch.no_grad():
        plain, mirror = (torch.softmax(one(v)["gender"], 1)[:, 1] for v in (x, x.flip(3)))
        age = (torch.softmax(one(x)["age"], 1) * torch.arange(101)).sum(1)
    got_age, got_prob = sess.run(["age", "gender_prob"], {INPUT_NAME: x.numpy()})
    assert got_prob == pytest.approx(((plain + mirror) / 2).numpy(), abs=1e-4)
    assert got_age == pytest.approx(age.numpy(), abs=1e-3)
    # Runs that did not start from one checkpoint, or record none, or are another network, are
    # refused: the mean of their weights is no network.
    ckpt = torch.load(tunes[1] / "final.pt", weights_only=False)
    ckpt["config"]["model"]["dropout"] = 0.3  # training refuses it; a hand-edited file may not
    other = tmp_path / "d3"
    other.mkdir()
    torch.save(ckpt, other / "final.pt")
    later = _train(TINY, folder, tmp_path / "later", "--init", str(tunes[1] / "final.pt"))
    capsys.readouterr()
    for runs, message in (
        (f"{tunes[0]},{later}", "were trained on from different checkpoints"),
        (f"{start},{tunes[0]}", "records no --init"),
        (f"{tunes[0]},{other}", "in network: their weights cannot be averaged"),
        (" , ", "names no run folder"),
    ):
        assert export.main([*args, "--run", runs]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert export.main([*args, "--run", str(start), "--mirror-heads", "emotion"]) == 2
    err = capsys.readouterr().err
    assert "--mirror-heads names emotion, which no member has (their heads: age, gender)" in err
