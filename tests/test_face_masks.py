"""Synthetic masks for the mask head: where they sit, which labels they bring, which faces."""

import pytest

torch = pytest.importorskip("torch", reason="needs the train extra (make install-train)")

# Imported after the skip: these modules import torch.
from model.face_masks import CHIP_FACE, INCORRECT, NONE, WORN, draw_mask, draw_some  # noqa: E402

SIZE = 80


def _covered(alpha: torch.Tensor, y_frac: float) -> float:
    """The mask's coverage at the face's centre line, ``y_frac`` down the chip."""
    left, right, _ = CHIP_FACE["eyes"]
    return float(alpha[0, int(y_frac * SIZE), int((left + right) / 2 * SIZE)])


def test_a_worn_mask_covers_nose_and_mouth_and_an_incorrect_one_leaves_the_nose_bare():
    gen = torch.Generator().manual_seed(0)
    eye_y, nose, mouth = CHIP_FACE["eyes"][2], CHIP_FACE["nose_y"], CHIP_FACE["mouth_y"]
    for _ in range(20):
        alpha, fill = draw_mask(SIZE, SIZE, incorrect=False, gen=gen)
        assert alpha.shape == (1, SIZE, SIZE) and fill.shape == (3, SIZE, SIZE)
        assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1 and float(fill.min()) >= 0
        assert _covered(alpha, nose) == 1 and _covered(alpha, mouth) == 1
        assert _covered(alpha, eye_y) == 0  # the eyes stay visible
        alpha, _ = draw_mask(SIZE, SIZE, incorrect=True, gen=gen)
        assert _covered(alpha, nose) == 0 and _covered(alpha, eye_y) == 0
        assert float(alpha[0, int(mouth * SIZE) :].sum()) > 50  # on the lips or the chin


def test_only_eligible_unlabelled_faces_are_drawn_and_their_labels_match():
    n = 400
    x = torch.full((n, 3, SIZE, SIZE), 0.5)
    labels = torch.full((n,), -1)
    labels[:10] = WORN  # a real mask crop keeps its own label and pixels
    eligible = torch.ones(n, dtype=torch.bool)
    eligible[10:50] = False  # an expression face is never drawn on
    out, new = draw_some(x, labels, eligible, 0.5, torch.Generator().manual_seed(1))
    changed = (out - x).abs().amax(dim=(1, 2, 3)) > 0.02
    assert torch.equal(new[:10], labels[:10]) and not changed[:50].any()
    assert (new[10:50] == -1).all()
    chosen = new[50:] >= 0
    assert 0.4 < float(chosen.float().mean()) < 0.6  # about the share asked for
    drawn = (new[50:] == WORN) | (new[50:] == INCORRECT)
    assert torch.equal(changed[50:], drawn)  # a face labelled bare is left as it was
    counts = [int((new[50:] == k).sum()) for k in (WORN, INCORRECT, NONE)]
    assert counts[0] > counts[1] > 0 and counts[2] > 0
    again, _ = draw_some(x, labels, eligible, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(again, out)  # reproducible from the seed


def test_evaluation_masks_sit_on_the_model_template_and_cover_every_face():
    """The template of the shipped file puts nose and mouth where training draws them."""
    np = pytest.importorskip("numpy")
    from conftest import SHIPPED_MODEL

    from model.face_masks import draw_on_images, face_in_template
    from pipelines.predictions import load_model_spec

    if not SHIPPED_MODEL.exists():
        pytest.skip("shipped model not built yet")
    spec = load_model_spec(str(SHIPPED_MODEL))
    face = face_in_template(spec.crop_template, spec.input_size)
    assert face["eyes"] == pytest.approx(CHIP_FACE["eyes"], abs=0.01)
    assert face["nose_y"] == pytest.approx(CHIP_FACE["nose_y"], abs=0.01)
    assert face["mouth_y"] == pytest.approx(CHIP_FACE["mouth_y"], abs=0.01)
    grey = np.full((4, SIZE, SIZE, 3), 128, np.uint8)
    drawn = draw_on_images(grey, 0, face)
    nose_row = drawn[:, int(face["nose_y"] * SIZE)]
    assert (np.abs(nose_row.astype(int) - 128).max(axis=(1, 2)) > 10).all()  # every face masked
    assert np.array_equal(drawn, draw_on_images(grey, 0, face))
    assert np.array_equal(
        drawn[:, : int(face["eyes"][2] * SIZE)], grey[:, : int(face["eyes"][2] * SIZE)]
    )


def test_training_draws_masks_on_utkface_faces_with_or_without_a_mask_head():
    import dataclasses

    import numpy as np

    from model.face_sets import KINDS
    from model.train_config import load_config
    from model.training import _augmented

    base = load_config()
    off = {k: 0 for k in ("hflip", "rotate_deg", "scale", "translate", "brightness", "contrast")}
    off.update(saturation=0, grayscale=0, downscale_prob=0, white_balance=0, gamma=0, noise=0)
    augment = dataclasses.replace(base.augment, **off, eyeglasses=0, face_masks=1.0)
    cfg = dataclasses.replace(base, augment=augment)
    kind = np.array([KINDS.index("utkface")] * 30 + [KINDS.index("emotion")] * 10)
    x = torch.full((40, 3, SIZE, SIZE), 0.5)
    gen = torch.Generator().manual_seed(0)
    age_only = {"age": torch.full((40,), 30)}
    out = _augmented(x, age_only, kind, cfg, gen)
    changed = (out - x).abs().amax(dim=(1, 2, 3)) > 0.02
    assert set(age_only) == {"age"} and 15 < int(changed[:30].sum()) < 30
    assert not changed[30:].any()  # expression faces keep their expression
    with_head = {"age": torch.full((40,), 30), "mask": torch.full((40,), -1)}
    out = _augmented(x, with_head, kind, cfg, torch.Generator().manual_seed(0))
    drawn = (out - x).abs().amax(dim=(1, 2, 3)) > 0.02
    assert torch.equal(drawn, changed)  # the same draws from the same seed
    assert (with_head["mask"][:30] >= 0).all() and (with_head["mask"][30:] == -1).all()


def test_evaluate_draws_masks_on_request_and_says_when_it_cannot(tmp_path):
    """``jobs.evaluate --face-masks SEED``: the same faces, masked, read differently by a model
    that reads the mean colour; without torch, a one-line error."""
    import json
    import subprocess
    import sys

    import cv2
    import numpy as np
    from test_model_export import ROOT, _KnownNet, _spec

    from model.onnx_export import export_onnx

    onnx_path = tmp_path / "known.onnx"
    heads = {"age": [str(i) for i in range(101)], "gender": ["male", "female"]}
    export_onnx(_KnownNet(), _spec(32, heads, {"chip_crop": "1.0"}), onnx_path)  # a 32 px TEMPLATE
    (tmp_path / "img").mkdir()
    lines = ["path,age,gender"]
    for i, age in enumerate((20, 40, 60)):
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), np.full((48, 48, 3), age, np.uint8))
        lines.append(f"img/{i}.png,{age},0")
    (tmp_path / "faces.csv").write_text("\n".join(lines) + "\n")
    args = ["--model", str(onnx_path), "--data", str(tmp_path), "--manifest"]
    args += [str(tmp_path / "faces.csv"), "--json", str(tmp_path / "m.json")]
    cmd = [sys.executable, "-m", "jobs.evaluate", *args]
    plain = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert json.loads((tmp_path / "m.json").read_text())["mae"] == pytest.approx(0, abs=0.5)
    masked = subprocess.run([*cmd, "--face-masks", "0"], cwd=ROOT, capture_output=True, text=True)
    assert masked.returncode == 0, masked.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["face_masks_seed"] == 0 and m["mae"] > 2  # the masks moved the mean colour
    no_torch = [sys.executable, "-c", "import sys; sys.modules['torch'] = None; "
                "from jobs.evaluate import main; sys.exit(main())"]  # fmt: skip
    res = subprocess.run([*no_torch, *args, "--face-masks", "0"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "needs torch" in res.stderr
