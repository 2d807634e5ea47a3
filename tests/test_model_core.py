"""Losses (values by hand), heads from config, metrics on a hand-computed example, ensembles."""

import dataclasses
import math

import numpy as np
import pytest

from model.metrics import (
    evaluate_predictions,
    format_comparison,
    format_report,
    mcnemar_exact_p,
    paired_comparison,
    sign_flip_p,
)
from model.train_config import AgeLossConfig, AugmentConfig, LossConfig, ModelConfig

torch = pytest.importorskip("torch", reason="needs the train extra (make install-train)")

# Imported after the skip: these modules import torch.
from model.augment import degrade, random_erase  # noqa: E402
from model.losses import (  # noqa: E402
    MultiTaskLoss,
    age_loss,
    class_loss,
    expected_age,
    gaussian_targets,
)
from model.network import (  # noqa: E402
    Ensemble,
    MultiTaskNet,
    build_model,
    count_flops,
    count_params,
)

NO_AUGMENT = AugmentConfig(
    hflip=0, rotate_deg=0, scale=0, translate=0, brightness=0, contrast=0, saturation=0,
    grayscale=0, erase_prob=0, erase_area=(0.02, 0.2), downscale_prob=0, downscale_px=(20, 64),
    white_balance=0, gamma=0, noise=0, eyeglasses=0, face_masks=0,
)  # fmt: skip


def _augment(**values) -> AugmentConfig:
    """Every augmentation off but ``values``."""
    return dataclasses.replace(NO_AUGMENT, **values)


def _age_loss(kind: str, **values) -> AgeLossConfig:
    off = {"sigma": 2.0, "l1_weight": 0.0, "mean_weight": 0.0, "variance_weight": 0.0}
    return AgeLossConfig(type=kind, **{**off, **values})


def test_gaussian_targets_by_hand():
    t = gaussian_targets(torch.tensor([1]), 3, 1.0)[0]
    e = math.exp(-0.5)
    assert t.tolist() == pytest.approx([e / (1 + 2 * e), 1 / (1 + 2 * e), e / (1 + 2 * e)])


def test_age_losses_by_hand():
    logits = torch.zeros(1, 3)  # uniform over ages 0, 1, 2
    age = torch.tensor([0])
    assert float(age_loss(logits, age, _age_loss("ce"))) == pytest.approx(math.log(3))
    # soft targets sum to one, so cross-entropy against a uniform prediction is log 3
    assert float(age_loss(logits, age, _age_loss("gaussian", sigma=2))) == pytest.approx(
        math.log(3), rel=1e-6
    )
    # mean 1, variance 2/3: ln3 + 0.2 * (1 - 0)^2 / 2 + 0.05 * 2/3
    mv = age_loss(logits, age, _age_loss("mean_variance", mean_weight=0.2, variance_weight=0.05))
    assert float(mv) == pytest.approx(math.log(3) + 0.1 + 0.05 * 2 / 3, rel=1e-6)
    l1 = age_loss(logits, torch.tensor([2]), _age_loss("ce", l1_weight=0.5))
    assert float(l1) == pytest.approx(math.log(3) + 0.5 * 1.0, rel=1e-6)
    assert float(expected_age(torch.tensor([[0.0, math.log(3)]]))) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="unknown age loss 'nope'"):
        _age_loss("nope")


def test_multitask_weights_and_unknown_labels():
    crit = MultiTaskLoss(LossConfig({"age": 2.0, "gender": 0.5}, _age_loss("ce"), 0.0, 0.0, 0.0))
    out = {
        "age": torch.zeros(2, 3),
        "gender": torch.tensor([[0.0, math.log(3)], [5.0, 5.0]]),
        "emotion": torch.zeros(2, 7),
    }
    # second face: gender unknown (-1) so ignored; emotion has no labels at all
    total, parts = crit(out, {"age": torch.tensor([0, 2]), "gender": torch.tensor([0, -1])})
    assert set(parts) == {"age", "gender"}
    assert float(parts["gender"]) == pytest.approx(math.log(4), rel=1e-6)
    assert float(total) == pytest.approx(2 * math.log(3) + 0.5 * math.log(4), rel=1e-6)
    smooth = MultiTaskLoss(LossConfig({"age": 1.0, "gender": 1.0}, _age_loss("ce"), 0.1, 0.0, 0.0))
    _, p = smooth({"gender": torch.zeros(1, 2)}, {"gender": torch.tensor([1])})
    assert float(p["gender"]) == pytest.approx(math.log(2), rel=1e-6)


def test_focal_loss_weighs_each_face_by_what_the_head_still_gets_wrong():
    # p(true) = 3/4 for the first face, 1/2 for the second: CE ln(4/3) and ln 2.
    logits = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])
    y = torch.tensor([1, 0])
    assert float(class_loss(logits, y, None, 0.0, 0.0)) == pytest.approx(
        (math.log(4 / 3) + math.log(2)) / 2, rel=1e-6
    )
    focal = (0.25**2 * math.log(4 / 3) + 0.5**2 * math.log(2)) / 2
    assert float(class_loss(logits, y, None, 0.0, 2.0)) == pytest.approx(focal, rel=1e-6)
    # Class weights 1 and 3: a weighted mean, as F.cross_entropy's.
    weighted = (3 * 0.25**2 * math.log(4 / 3) + 0.5**2 * math.log(2)) / 4
    weight = torch.tensor([1.0, 3.0])
    assert float(class_loss(logits, y, weight, 0.0, 2.0)) == pytest.approx(weighted, rel=1e-6)
    # Gamma 0 with smoothing and weights is F.cross_entropy itself.
    plain = torch.nn.functional.cross_entropy(logits, y, weight=weight, label_smoothing=0.1)
    assert float(class_loss(logits, y, weight, 0.1, 0.0)) == pytest.approx(float(plain))
    crit = MultiTaskLoss(LossConfig({"gender": 1.0}, _age_loss("ce"), 0.0, 0.0, 2.0))
    assert float(crit({"gender": logits}, {"gender": y})[0]) == pytest.approx(focal, rel=1e-6)


def test_heads_from_config_add_outputs():
    cfg = ModelConfig("resnet18", 0.25, False, 0.1, {"age": 101, "gender": 2, "emotion": 7})
    model = build_model(cfg).eval()
    out = model(torch.zeros(2, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "age": (2, 101),
        "gender": (2, 2),
        "emotion": (2, 7),
    }
    assert isinstance(model.heads["emotion"][0], torch.nn.Dropout)


@pytest.mark.parametrize("name,dim", [("resnet34", 128), ("resnet50", 512)])
def test_backbones(name, dim):
    model = MultiTaskNet(name, {"age": 101, "gender": 2}, width=0.25, small_input=True).eval()
    assert model.feature_dim == dim  # 512 channels (x4 for the bottleneck blocks) at width 1/4
    assert isinstance(model.backbone.maxpool, torch.nn.Identity)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 32, 32))
    assert out["age"].shape == (1, 101) and out["gender"].shape == (1, 2)


def test_resnet_width_and_cost():
    full, half = MultiTaskNet("resnet18"), MultiTaskNet("resnet18", width=0.5)
    assert half.feature_dim == 256 and count_params(half) < count_params(full) / 3
    assert 0 < count_flops(half, 80) < 0.6e9
    with pytest.raises(ValueError, match="unknown backbone"):
        MultiTaskNet("vgg11")


def test_metrics_by_hand():
    true_age = [10, 20, 30, 40, 75]
    pred_age = [12, 20, 36, 29, 75.4]  # errors 2, 0, 6, 11, 0.4
    true_g = [0, 1, 1, 0, -1]  # last face: gender unknown
    prob_f = [0.1, 0.9, 0.2, 0.4, 0.9]
    m = evaluate_predictions(true_age, pred_age, true_g, prob_f, race=[0, 1, 1, 2, 0])
    assert m["n"] == 5
    assert m["mae"] == pytest.approx(19.4 / 5)
    assert m["exact_acc"] == pytest.approx(2 / 5)  # 20 and round(75.4) == 75
    assert [m[f"within_{k}"] for k in (1, 3, 5, 10, 15)] == pytest.approx(
        [2 / 5, 3 / 5, 3 / 5, 4 / 5, 1.0]
    )
    assert m["gender_n"] == 4 and m["gender_acc"] == pytest.approx(0.75)
    assert m["gender_confusion"] == [[2, 0], [1, 1]]
    bands = m["mae_per_band"]
    assert bands["10-19"]["mae"] == pytest.approx(2) and bands["40-49"]["mae"] == pytest.approx(11)
    assert bands["70+"]["n"] == 1 and bands["70+"]["mae"] == pytest.approx(0.4)
    assert bands["0-9"]["mae"] is None and bands["0-9"]["gender_acc"] is None
    assert bands["30-39"]["bias"] == pytest.approx(6) and bands["40-49"]["bias"] == pytest.approx(
        -11
    )
    assert [bands[b]["gender_acc"] for b in ("10-19", "20-29", "30-39")] == [1.0, 1.0, 0.0]
    assert bands["70+"]["bias"] == pytest.approx(0.4) and bands["70+"]["gender_acc"] is None
    assert m["mae_per_race"]["black"] == {"n": 2, "mae": pytest.approx(3.0)}
    assert m["mae_per_race"]["white"]["mae"] == pytest.approx(1.2)
    text = format_report(m)
    assert "age MAE          3.880" in text and "gender acc       75.00%" in text
    assert np.isfinite(m["within_15"])


def test_paired_tests_by_hand():
    # exact McNemar: 1 against 5 discordant pairs, P(X <= 1 | n=6, 1/2) = 7/64, two-sided 14/64
    assert mcnemar_exact_p(1, 5) == pytest.approx(14 / 64)
    assert mcnemar_exact_p(5, 1) == mcnemar_exact_p(1, 5)
    assert mcnemar_exact_p(0, 0) == 1.0 and mcnemar_exact_p(3, 3) == 1.0
    assert mcnemar_exact_p(0, 10) == pytest.approx(2 / 1024)
    # sign flips of (1, 1, 1): |sum| = 3 only for the two all-same patterns of 8
    assert sign_flip_p([1.0, 1.0, 1.0]) == pytest.approx(2 / 8, abs=0.005)
    assert sign_flip_p([0.0, 0.0]) == 1.0
    assert sign_flip_p(np.full(20, 0.5)) < 1e-4  # 2 of 2^20 patterns, floored at 1 / draws
    assert sign_flip_p([1.0, 1.0, 1.0], seed=3) != sign_flip_p([1.0, 1.0, 1.0], seed=4)
    c = paired_comparison([2, 0, 6], [1, 1, 6], [True, True, False], [True, False, True])
    assert c["n"] == 3 and c["mae_diff"] == pytest.approx(0.0)
    assert (c["gender_right_a"], c["gender_right_b"]) == (2, 2)
    assert (c["gender_only_a"], c["gender_only_b"], c["gender_p"]) == (1, 1, 1.0)
    assert "right only with old 1, only with new 1" in format_comparison(c, "old", "new")
    with pytest.raises(ValueError):
        paired_comparison([1, 2], [1], [True], [True])
    # an unlabelled gender leaves the age pair in and the gender pair out
    c = paired_comparison([2, 0, 6], [1, 1, 3], [True, True, True], [True, False, False],
                          gender_known=[True, True, False])  # fmt: skip
    assert c["n"] == 3 and c["mae_diff"] == pytest.approx(1.0)
    assert c["gender_n"] == 2 and (c["gender_right_a"], c["gender_right_b"]) == (2, 1)
    assert (c["gender_only_a"], c["gender_only_b"]) == (1, 0)


def test_evaluate_compare_pairs_faces_by_path_and_ages_without_gender():
    from jobs.evaluate import compare
    from model.datasets import FaceRecord

    def run(paths, genders, ages, probs):
        records = [FaceRecord(p, 30, g) for p, g in zip(paths, genders, strict=True)]
        labels = {"age": np.full(len(paths), 30), "gender": np.array(genders)}
        pred = {"age": np.array(ages, float), "gender_prob": np.array(probs, float)}
        return {"records": records, "labels": labels, "pred": pred}

    # b read the faces in another order and lacks face "d"; face "c" has no gender label
    a = run(["a", "b", "c", "d"], [0, 1, -1, 1], [32, 30, 40, 99], [0.2, 0.5, 0.9, 0.9])
    b = run(["c", "b", "a"], [-1, 1, 0], [30, 27, 30], [0.1, 0.4, 0.7])
    c = compare(a, b)
    assert c["n"] == 3 and c["mae_a"] == pytest.approx(4.0) and c["mae_b"] == pytest.approx(1.0)
    assert c["gender_n"] == 2  # a and b; P(female) 0.5 counts as female, as in gender_metrics
    assert (c["gender_right_a"], c["gender_right_b"]) == (2, 0)


def _high_freq(x: torch.Tensor) -> float:
    """Mean absolute difference between horizontally adjacent pixels."""
    return float((x[..., 1:] - x[..., :-1]).abs().mean())


def test_degrade_blurs_shifts_colour_and_is_seeded():
    x = torch.rand(16, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    soft = degrade(x, _augment(downscale_prob=1.0, downscale_px=(8, 12)), torch.Generator())
    assert soft.shape == x.shape
    assert _high_freq(soft) < 0.5 * _high_freq(x)  # 40 px noise through ~10 px is smooth
    assert torch.allclose(soft.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02)  # area-preserving

    cfg = _augment(white_balance=0.2, gamma=0.3, noise=0.05, downscale_prob=0.5)
    a = degrade(x, cfg, torch.Generator().manual_seed(3))
    b = degrade(x, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert a.min() >= 0 and a.max() <= 1
    gains = degrade(torch.full((64, 3, 4, 4), 0.5), _augment(white_balance=0.2), torch.Generator())
    per_channel = gains[:, :, 0, 0] / 0.5
    assert per_channel.min() >= 0.8 - 1e-6 and per_channel.max() <= 1.2 + 1e-6
    assert per_channel.std() > 0.05  # channels get their own gains
    assert torch.equal(degrade(x, NO_AUGMENT, torch.Generator()), x)  # all off: untouched
    tiny = degrade(x, _augment(downscale_prob=1.0, downscale_px=(0, 1)), torch.Generator())
    assert tiny.shape == x.shape and _high_freq(tiny) < 0.1 * _high_freq(x)  # 2 px at least


class _FixedNet(torch.nn.Module):
    """Returns the same logits for every image (a stand-in member with known probabilities)."""

    head_classes = {"age": 101, "gender": 2}

    def __init__(self, age_logits, gender_logits):
        super().__init__()
        self.age = torch.tensor(age_logits, dtype=torch.float32)
        self.gender = torch.tensor(gender_logits, dtype=torch.float32)

    def forward(self, x):
        n = x.shape[0]
        return {"age": self.age.expand(n, -1), "gender": self.gender.expand(n, -1)}


def test_ensemble_averages_member_probabilities():
    rng = np.random.default_rng(0)
    a = _FixedNet(rng.normal(size=101) * 3, [2.0, -1.0])  # P(female) = 1 / (1 + e^3)
    b = _FixedNet(rng.normal(size=101) * 3, [-1.0, 1.0])  # P(female) = 1 / (1 + e^-2)
    x = torch.zeros(3, 3, 8, 8)
    out = Ensemble([a, b])(x)
    want_gender = (1 / (1 + np.exp(3.0)) + 1 / (1 + np.exp(-2.0))) / 2
    got = torch.softmax(out["gender"], 1)[:, 1].numpy()
    assert got == pytest.approx([want_gender] * 3, abs=1e-6)
    want_age = (torch.softmax(a.age, 0) + torch.softmax(b.age, 0)) / 2
    assert torch.softmax(out["age"], 1)[0].numpy() == pytest.approx(want_age.numpy(), abs=1e-6)
    one = Ensemble([a])(x)  # one member: its own probabilities
    assert torch.softmax(one["age"], 1)[1].numpy() == pytest.approx(
        torch.softmax(a.age, 0).numpy(), abs=1e-6
    )


class _MaskNet(_FixedNet):
    """A member that also reads mask status."""

    def __init__(self, age_logits, gender_logits, mask_logits):
        super().__init__(age_logits, gender_logits)
        self.mask = torch.tensor(mask_logits, dtype=torch.float32)
        self.head_classes = {"age": 101, "gender": 2, "mask": 3}

    def forward(self, x):
        return super().forward(x) | {"mask": self.mask.expand(x.shape[0], -1)}


def test_a_head_one_member_has_is_that_members_and_shared_heads_average():
    a = _FixedNet([0.0] * 101, [2.0, -1.0])
    b = _MaskNet([0.0] * 101, [-1.0, 1.0], [3.0, 0.0, -1.0])
    out = Ensemble([a, b])(torch.zeros(2, 3, 8, 8))
    assert torch.softmax(out["mask"], 1)[0].numpy() == pytest.approx(
        torch.softmax(b.mask, 0).numpy(), abs=1e-6
    )
    want_gender = (1 / (1 + np.exp(3.0)) + 1 / (1 + np.exp(-2.0))) / 2
    assert torch.softmax(out["gender"], 1)[0, 1].item() == pytest.approx(want_gender, abs=1e-6)


def test_ensemble_refuses_members_whose_heads_disagree_in_classes():
    a = _FixedNet([0.0] * 101, [0.0, 0.0])
    b = _FixedNet([0.0] * 101, [0.0, 0.0])
    b.head_classes = {"age": 101, "gender": 3}
    with pytest.raises(ValueError, match="differ in the classes of head gender"):
        Ensemble([a, b])


class _SidedNet(torch.nn.Module):
    """Reads mask status from the image's left half, age from its right half: a mirror image
    gives it other readings, so what a mirrored head averages shows in its output."""

    head_classes = {"age": 101, "gender": 2, "mask": 3}

    def forward(self, x):
        left, right = x[..., :4].mean((1, 2, 3)), x[..., 4:].mean((1, 2, 3))
        zeros = torch.zeros_like(left)
        return {
            "age": torch.stack([right * k for k in range(101)], 1),
            "gender": torch.stack([zeros, right], 1),
            "mask": torch.stack([left, zeros, -left], 1),
        }


def test_mirrored_heads_average_the_face_and_its_mirror_and_leave_the_others():
    net = _SidedNet()
    x = torch.zeros(2, 3, 8, 8)
    x[..., :4] = 1.0  # left half bright: mask reads [1, 0, -1] plain, [0, 0, 0] mirrored
    out = Ensemble([net], mirrored_heads=["mask"])(x)
    plain, mirror = torch.softmax(torch.tensor([1.0, 0, -1]), 0), torch.full((3,), 1 / 3)
    got = torch.softmax(out["mask"], 1)
    assert got[1].numpy() == pytest.approx(((plain + mirror) / 2).numpy(), abs=1e-6)
    # age and gender from the plain face only: its right half is dark, so all zero logits
    assert torch.softmax(out["gender"], 1)[0].numpy() == pytest.approx([0.5, 0.5], abs=1e-6)
    with pytest.raises(ValueError, match="no member has the head"):
        Ensemble([net], mirrored_heads=["emotion"])


def test_members_without_a_mirrored_head_read_the_plain_faces_only():
    seen = []

    class Counting(_FixedNet):
        def forward(self, x):
            seen.append(x.shape[0])
            return super().forward(x)

    plain = Counting([0.0] * 101, [0.0, 0.0])
    out = Ensemble([plain, _SidedNet()], mirrored_heads=["mask"])(torch.zeros(3, 3, 8, 8))
    assert seen == [3] and out["mask"].shape == (3, 3) and out["age"].shape == (3, 101)


def test_averaged_weights_are_the_mean_of_each_float_and_keep_the_counts():
    from model.network import average_weights

    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    mean = average_weights([a, b])
    assert mean["w"].tolist() == [2.0, 4.0] and mean["n"].item() == 5
    with pytest.raises(ValueError, match="different layers"):
        average_weights([a, {"w": a["w"]}])


def test_eyeglasses_are_drawn_around_the_eyes_only_and_seeded():
    from model.eyeglasses import CHIP_EYES, draw, draw_on_images, eyes_in_crop

    x = torch.full((6, 3, 80, 80), 0.6)
    chosen = torch.tensor([True, True, True, True, False, True])
    a = draw(x, torch.Generator().manual_seed(3), CHIP_EYES, chosen)
    b = draw(x, torch.Generator().manual_seed(3), CHIP_EYES, chosen)
    c = draw(x, torch.Generator().manual_seed(4), CHIP_EYES, chosen)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[4], x[4])  # not chosen: untouched
    changed = (a - x).abs().amax(dim=1) > 0.02  # N, H, W
    eye_row = int(CHIP_EYES[2] * 80)
    for i in (0, 1, 2, 3, 5):
        rows = torch.nonzero(changed[i].any(dim=1)).flatten()
        # The frames span the eye line and stay in the upper half: mouth and chin are untouched.
        assert rows.min() < eye_row < rows.max() < 45, rows
        left_eye = changed[i, :, : int(CHIP_EYES[0] * 80) + 1].any()
        right_eye = changed[i, :, int(CHIP_EYES[1] * 80) :].any()
        assert left_eye and right_eye
    # The centred half of the chip, blown up: an eye at 0.3015 moves to (0.3015 - 0.25) / 0.5.
    assert eyes_in_crop(0.5) == pytest.approx((0.103, 0.897, 0.0806))
    grey = np.full((3, 80, 80, 3), 150, np.uint8)
    drawn = draw_on_images(grey, 0, CHIP_EYES, batch=2)
    assert drawn.dtype == np.uint8 and drawn.shape == grey.shape
    assert (drawn != grey).any(axis=(1, 2, 3)).all()
    assert np.array_equal(drawn, draw_on_images(grey, 0, CHIP_EYES, batch=2))  # reproducible


def test_training_glasses_sit_where_the_shipped_template_puts_the_eyes():
    """CHIP_EYES (training) and the crop template in the model file (evaluation, video) must
    agree, or the glasses drawn in training would sit elsewhere than on video faces."""
    from conftest import SHIPPED_MODEL

    from model.eyeglasses import CHIP_EYES, eyes_in_template
    from pipelines.predictions import load_model_spec

    if not SHIPPED_MODEL.exists():
        pytest.skip("shipped model not built yet")
    spec = load_model_spec(str(SHIPPED_MODEL))
    assert eyes_in_template(spec.crop_template, spec.input_size) == pytest.approx(
        CHIP_EYES, abs=0.01
    )


def test_random_erase_boxes_cover_the_configured_share_of_the_image():
    x = torch.zeros(32, 3, 64, 64)
    for lo, hi in ((0.1, 0.1), (0.3, 0.4)):
        cfg = _augment(erase_prob=1.0, erase_area=(lo, hi))
        erased = random_erase(x, cfg, torch.Generator().manual_seed(0))
        share = (erased[:, 0] != 0).float().mean(dim=(1, 2))
        # integer box sides round the area down by up to a side's worth of pixels
        assert share.min() >= lo * 0.8 and share.max() <= hi * 1.05, share
    assert torch.equal(random_erase(x, NO_AUGMENT, torch.Generator()), x)
