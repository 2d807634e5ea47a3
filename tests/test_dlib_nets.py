"""The pretrained backbone: our torch layers reproduce dlib's age and gender networks exactly."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from model.dlib_nets import (  # noqa: E402
    AGE_ONNX,
    GENDER_ONNX,
    DlibAgeGender,
    dlib_input_normalization,
    load_dlib_weights,
    package_file,
)
from model.network import build_backbone, build_model, load_pretrained  # noqa: E402


def _source(name):
    try:
        return package_file(name)
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_pretrained_model_answers_as_the_source_networks():
    """Loaded backbone and heads give the age network's probabilities (its "80 and over" class is
    our classes 80-100 together) and the gender network's on the crop averaged to 32 px."""
    import onnxruntime as ort

    age_file, gender_file = _source(AGE_ONNX), _source(GENDER_ONNX)
    model = build_model({"backbone": "dlib_age_gender", "heads": {"age": 101, "gender": 2}})
    assert "Cydral" in load_pretrained(model, "dlib_age_gender")
    model.eval()
    x = np.random.default_rng(0).normal(0, 0.5, (3, 3, 64, 64)).astype(np.float32)
    age = ort.InferenceSession(str(age_file)).run(None, {"images": x})[0]
    x32 = x.reshape(3, 3, 32, 2, 32, 2).mean(axis=(3, 5))
    female_male = ort.InferenceSession(str(gender_file)).run(None, {"images": x32})[0]
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    p_age, p_gender = out["age"].softmax(1).numpy(), out["gender"].softmax(1).numpy()
    np.testing.assert_allclose(p_age[:, :80], age[:, :80], atol=1e-5)
    np.testing.assert_allclose(p_age[:, 80:].sum(1), age[:, 80], atol=1e-5)
    np.testing.assert_allclose(p_gender[:, 1], female_male[:, 0], atol=1e-5)  # ours: P(female)
    assert age.argmax(1).std() > 0 or female_male[:, 0].std() > 1e-3  # inputs told apart


def test_features_are_both_towers():
    net = DlibAgeGender().eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 256 + 16)
    with pytest.raises(ValueError, match="64 px"):
        net(torch.zeros(1, 3, 80, 80))


def test_normalization_matches_dlib():
    """dlib_input_normalization is dlib's (RGB - mean) / 256, and the config's dlib variant
    uses it."""
    from pathlib import Path

    from model.train import load_config, variant_config

    mean, std = dlib_input_normalization()
    config = Path(__file__).resolve().parents[1] / "config" / "train.yaml"
    data = variant_config(load_config(config), "dlib")["data"]
    np.testing.assert_allclose(data["mean"], mean, atol=1e-6)
    np.testing.assert_allclose(data["std"], std, atol=1e-6)
    rgb = np.array([0.0, 128.0, 255.0])
    ours = (rgb[:, None] / 255 - np.array(mean)) / np.array(std)
    dlib = (rgb[:, None] - np.array([122.781998, 117.000999, 104.297997])) / 256
    np.testing.assert_allclose(ours, dlib, atol=1e-9)


def test_files_that_are_not_the_dlib_networks_are_refused(tmp_path):
    (tmp_path / AGE_ONNX).write_bytes(b"not a model")
    (tmp_path / GENDER_ONNX).write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not an ONNX file"):
        load_dlib_weights(DlibAgeGender(), folder=tmp_path)


def test_swapped_files_are_refused(tmp_path):
    (tmp_path / AGE_ONNX).write_bytes(_source(GENDER_ONNX).read_bytes())
    (tmp_path / GENDER_ONNX).write_bytes(_source(AGE_ONNX).read_bytes())
    with pytest.raises(ValueError, match="convolutions"):
        load_dlib_weights(DlibAgeGender(), folder=tmp_path)


def test_backbones_without_pretrained_weights_say_so():
    model = build_model({"backbone": "resnet18", "width": 0.25})
    with pytest.raises(ValueError, match="no pretrained weights"):
        load_pretrained(model, "resnet18")
    with pytest.raises(ValueError, match="fixed shape"):
        build_backbone("dlib_age_gender", width=0.5)


def test_training_the_shipped_dlib_variant_starts_from_the_pretrained_weights(tmp_path):
    """config/train.yaml with its dlib variant, one step at learning rate 0: the saved backbone
    and heads are the source networks', bit for bit."""
    from pathlib import Path

    import cv2

    from model.train import load_config, train, variant_config

    _source(AGE_ONNX)
    root = Path(__file__).resolve().parents[1]
    cfg = variant_config(load_config(root / "config" / "train.yaml"), "dlib")
    assert cfg["model"]["backbone"] == "dlib_age_gender" and cfg["model"]["pretrained"]
    assert cfg["data"]["input_size"] == 64
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        name = f"{20 + i}_{i % 2}_0_2017{i:04d}.jpg.chip.jpg"
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (64, 64, 3), np.uint8))
    cfg["data"].update(cache_dir=None, val_fraction=0.25)
    cfg["train"].update(epochs=1, batch_size=4, lr=0.0, warmup_epochs=0, threads=1)
    log = []
    train(cfg, str(folder), str(tmp_path / "run"), log=log.append)
    assert any("pretrained weights" in line and "Cydral" in line for line in log)
    saved = torch.load(tmp_path / "run" / "final.pt", weights_only=False)["state_dict"]
    fresh = build_model(cfg["model"])
    load_pretrained(fresh, cfg["model"]["backbone"])
    for name, value in fresh.state_dict().items():
        assert torch.equal(saved[name], value), name


def test_variants_are_laid_over_the_config_and_typos_are_refused():
    from model.train import variant_config

    cfg = {"model": {"backbone": "resnet18", "width": 0.5}, "train": {"epochs": 60, "lr": 0.002}}
    cfg["variants"] = {"small": {"model": {"width": 0.25}, "train": {"epochs": 5}}}
    got = variant_config(cfg, "small")
    assert got["model"] == {"backbone": "resnet18", "width": 0.25}
    assert got["train"] == {"epochs": 5, "lr": 0.002} and cfg["train"]["epochs"] == 60
    with pytest.raises(ValueError, match="no variant 'big'.*small"):
        variant_config(cfg, "big")
    cfg["variants"]["typo"] = {"model": {"widht": 0.25}}
    with pytest.raises(ValueError, match="variants.typo.model.widht"):
        variant_config(cfg, "typo")
