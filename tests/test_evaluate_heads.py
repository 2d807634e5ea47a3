"""``jobs.evaluate`` on emotion and mask sets: the head each set labels, with figures known from
a tiny model whose heads answer by the crop's mean red (``onnx_models.write_tiny_model``), on
synthetic faces the detector cannot find (aligned from their box); the split each set's
``--split val`` picks, the paired comparison, the one-line error for a model without the head,
and, with the development data, the detector's recall on real FER-2013 faces."""

import csv
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, needs_shared_data
from onnx_models import write_tiny_model

from jobs.evaluate import main
from model.datasets import FaceRecord
from model.evaluation import head_detection, in_class_order, split_settings
from schemas.model_file import CLASS_NAMES

ROOT = Path(__file__).resolve().parents[1]
EMOTIONS = CLASS_NAMES["emotion"]
# Red levels per class: a model answers the class whose level is nearest the face's mean red.
EMOTION_LEVELS = (10, 50, 90, 130, 170, 210, 250)  # angry ... surprise in CLASS_NAMES order
MASK_LEVELS = (40, 128, 216)  # with_mask, with_incorrect_mask, without_mask
# Grey faces of the val folder: (class, grey level). Model A gets angry/10, happy and sad right;
# angry/90 reads as fear, surprise/170 as neutral.
EMOTION_VAL = [("angry", 10), ("angry", 90), ("happy", 130), ("sad", 210), ("surprise", 170)]
EMOTION_TRAIN = [("disgust", 50), ("neutral", 250), ("fear", 10)]
# Model B: wrong on angry/10 (disgust), right on angry/90 and surprise/170 as well.
EMOTION_LEVELS_B = (80, 20, 115, 135, 250, 210, 175)
# Mask crops: (file, label, photo, face level); the face's box is filled with its level and the
# rest of the crop with 255 - level, so only a crop of the box gives the expected answers.
MASK_ROWS = [
    ("with_mask/p1_0.jpg", "with_mask", "p1", 40),
    ("with_mask/p1_1.jpg", "with_mask", "p1", 40),
    ("without_mask/p2_0.jpg", "without_mask", "p2", 216),
    ("with_incorrect_mask/p3_0.jpg", "with_incorrect_mask", "p3", 128),
    ("without_mask/p4_0.jpg", "without_mask", "p4", 128),  # read as incorrectly worn
    ("with_mask/p5_0.jpg", "with_mask", "p5", 216),  # read as no mask
    ("with_mask/p6_0.jpg", "with_mask", "p6", 40),
    ("without_mask/p7_0.jpg", "without_mask", "p7", 216),
]
MASK_BOX = (24, 24, 72, 72)


def _emotion_set(root: Path) -> Path:
    for split, faces in (("val", EMOTION_VAL), ("train", EMOTION_TRAIN)):
        for i, (emotion, level) in enumerate(faces):
            path = root / "fer2013" / split / emotion / f"{split}_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.full((48, 48), level, np.uint8))
    return root / "fer2013"


def _mask_set(root: Path) -> Path:
    folder = root / "masks"
    folder.mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "photo", "x1", "y1", "x2", "y2"])
        for file, label, photo, level in MASK_ROWS:
            w.writerow([file, label, photo, *MASK_BOX])
            img = np.full((96, 96, 3), 255 - level, np.uint8)
            x1, y1, x2, y2 = MASK_BOX
            img[y1:y2, x1:x2, 2] = level  # red, BGR on disk
            img[y1:y2, x1:x2, :2] = 90
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / file), img)
    return folder


def _model(path: Path, size: int = 32, version: str = "a", split: dict | None = None, **heads):
    metadata = {"val_split": json.dumps(split)} if split else None
    write_tiny_model(path, size=size, extra_heads=heads, version=version, metadata=metadata)
    return path


def _evaluate(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_emotion_set_reports_the_head_detector_recall_and_plots(tmp_path, capsys):
    data = _emotion_set(tmp_path)
    model = _model(tmp_path / "a.onnx", emotion=EMOTION_LEVELS, mask=MASK_LEVELS)
    out_json, plots = tmp_path / "m.json", tmp_path / "plots"
    code, out, err = _evaluate(
        capsys, "--model", model, "--data", data, "--split", "val", "--json", out_json,
        "--plots", plots,
    )  # fmt: skip
    assert code == 0, err
    m = json.loads(out_json.read_text())
    e = m["emotion"]
    assert m["data_kind"] == "emotion" and m["n"] == 5 and e["n"] == 5
    assert e["accuracy"] == pytest.approx(0.6)
    # F1 of the classes present: angry 2/3 (recall 1/2, precision 1), happy 1, sad 1, surprise 0
    assert e["macro_f1"] == pytest.approx((2 / 3 + 1 + 1 + 0) / 4, abs=1e-6)
    assert e["recall"] == {"angry": 0.5, "happy": 1.0, "sad": 1.0, "surprise": 0.0}
    confusion = np.zeros((7, 7), int)
    for true, pred in [("angry", "angry"), ("angry", "fear"), ("happy", "happy"),
                       ("sad", "sad"), ("surprise", "neutral")]:  # fmt: skip
        confusion[EMOTIONS.index(true), EMOTIONS.index(pred)] += 1
    assert e["confusion"] == confusion.tolist() and e["classes"] == list(EMOTIONS)
    d = m["detection"]
    assert (d["faces"], d["detected"], d["recall"]) == (5, 0, 0.0)
    assert d["per_class"]["angry"] == {"faces": 2, "detected": 0, "recall": 0.0}
    assert list(d["per_class"]) == ["angry", "happy", "sad", "surprise"]
    assert d["fallback_landmarks"] == "crop template"
    # Every face was placed from its box: the head's figures there are the whole set's.
    assert list(d["by_alignment"]) == ["fallback"]
    assert d["by_alignment"]["fallback"]["accuracy"] == pytest.approx(0.6)
    assert m["split"] == {"split": "val", "by": "folder", "seed": 0, "group_val_fraction": 0.2}
    assert "mae" not in m and "gender_acc" not in m and "mask" not in m
    assert "emotion (5 faces): accuracy 60.00 %, macro-F1 0.667" in out
    assert "recall   angry 50.0 %, happy 100.0 %, sad 100.0 %, surprise 0.0 %" in out
    assert "the detector found the face on 0 of 2 angry crops (0.0 %)" in out
    assert "found the face on 0 of 5 crops (0.0 %)" in out
    assert "on the faces aligned from their box: accuracy 60.00 % of 5 (recall angry 50.0," in out
    # The detector found none of the 8 faces: the template's own positions stand in, said once.
    assert "found only 0 of 8 sampled faces" in err and err.count("warning:") == 1
    assert (plots / "emotion_confusion.png").stat().st_size > 5000
    assert not (plots / "gender_confusion.png").exists()

    code, out, err = _evaluate(capsys, "--model", model, "--data", data, "--json", out_json)
    assert code == 0, err
    m = json.loads(out_json.read_text())  # --split all: the training folder's faces too
    assert m["n"] == 8 and m["emotion"]["accuracy"] == pytest.approx(4 / 8)
    assert m["emotion"]["recall"]["disgust"] == 1.0 and m["emotion"]["recall"]["fear"] == 0.0


def test_model_without_the_head_is_a_one_line_error(tmp_path, capsys):
    emotion, masks = _emotion_set(tmp_path), _mask_set(tmp_path)
    plain = _model(tmp_path / "plain.onnx")
    code, out, err = _evaluate(capsys, "--model", plain, "--data", emotion)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert (
        err == f"error: {plain} has no emotion head for this emotion set (its heads: age, gender)\n"
    )
    masked = _model(tmp_path / "masked.onnx", mask=MASK_LEVELS)
    code, _, err = _evaluate(capsys, "--model", masked, "--data", emotion)
    assert code == 2 and err.count("\n") == 1 and "(its heads: age, gender, mask)" in err
    # --against: the other model is checked before any face is read
    code, _, err = _evaluate(capsys, "--model", masked, "--data", masks, "--against", plain)
    assert code == 2 and err.count("\n") == 1 and f"{plain} has no mask head" in err


def _photo_in_val(photo: str, seed: int, fraction: float) -> bool:
    """The training split's rule, restated: seeded SHA-1 of the photo below the fraction."""
    digest = hashlib.sha1(f"{seed}:{photo}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _expected_mask(photos: set[str]) -> np.ndarray:
    """The confusion matrix of MASK_LEVELS on the crops of ``photos``."""
    names = CLASS_NAMES["mask"]
    m = np.zeros((3, 3), int)
    for _, label, photo, level in MASK_ROWS:
        if photo in photos:
            pred = int(np.argmin([abs(level - c) for c in MASK_LEVELS]))
            m[names.index(label), pred] += 1
    return m


def test_mask_split_val_is_the_photos_the_model_held_out(tmp_path, capsys):
    data = _mask_set(tmp_path)
    out_json = tmp_path / "m.json"
    photos = {row[2] for row in MASK_ROWS}
    # A seed that holds out some photos but not all at half of them, and some at a fifth.
    seed = next(
        s
        for s in range(100)
        if 2 <= sum(_photo_in_val(p, s, 0.5) for p in photos) <= 5
        and any(_photo_in_val(p, s, 0.2) for p in photos)
    )
    held = {p for p in photos if _photo_in_val(p, seed, 0.5)}
    split = {"seed": seed, "val_fraction": 0.1, "group_val_fraction": 0.5}
    model = _model(tmp_path / "m.onnx", split=split, mask=MASK_LEVELS)
    code, out, err = _evaluate(
        capsys, "--model", model, "--data", data, "--split", "val", "--json", out_json
    )
    assert code == 0, err
    m = json.loads(out_json.read_text())
    expected = _expected_mask(held)
    assert m["mask"]["confusion"] == expected.tolist()
    assert m["n"] == expected.sum() == sum(r[2] in held for r in MASK_ROWS)
    assert m["split"] == {"split": "val", "by": "photo", "seed": seed, "group_val_fraction": 0.5}
    assert m["detection"]["faces"] == m["n"] and m["detection"]["detected"] == 0

    # All photos: hand-computed figures; only the box is warped onto the crop (the rest of
    # each crop has the level of another class).
    code, out, err = _evaluate(capsys, "--model", model, "--data", data, "--json", out_json)
    mask = json.loads(out_json.read_text())["mask"]
    assert mask["confusion"] == [[3, 0, 1], [0, 1, 0], [0, 1, 2]]
    assert mask["accuracy"] == pytest.approx(6 / 8)
    assert mask["recall"] == pytest.approx(
        {"with_mask": 3 / 4, "with_incorrect_mask": 1.0, "without_mask": 2 / 3}
    )
    assert "mask (8 faces): accuracy 75.00 %" in out
    assert "the detector found the face on 0 of 4 with_mask crops (0.0 %)" in out

    # No group_val_fraction in the metadata: training's default, 0.2 of the photos.
    old = _model(tmp_path / "old.onnx", split={"seed": seed, "val_fraction": 0.1}, mask=MASK_LEVELS)
    code, out, err = _evaluate(capsys, "--model", old, "--data", data, "--json", out_json)
    assert code == 0 and json.loads(out_json.read_text())["split"]["group_val_fraction"] == 0.2
    held = {p for p in photos if _photo_in_val(p, seed, 0.2)}
    _evaluate(capsys, "--model", old, "--data", data, "--split", "val", "--json", out_json)
    assert json.loads(out_json.read_text())["mask"]["confusion"] == _expected_mask(held).tolist()


def test_against_pairs_the_head_face_by_face(tmp_path, capsys):
    data = _emotion_set(tmp_path)
    a = _model(tmp_path / "a.onnx", emotion=EMOTION_LEVELS)
    # b reads 24 px crops with its own template: each model's faces are aligned for it
    b = _model(tmp_path / "b.onnx", size=24, version="b", emotion=EMOTION_LEVELS_B)
    out_json = tmp_path / "m.json"
    code, out, err = _evaluate(
        capsys, "--model", a, "--data", data, "--split", "val", "--against", b, "--json", out_json
    )
    assert code == 0, err
    against = json.loads(out_json.read_text())["against"]
    assert against["model"] == str(b) and against["model_version"] == "b"
    # a right on angry/10, happy, sad; b on all but angry/10: 1 face only a, 2 only b
    assert against["paired"] == {
        "emotion": {"n": 5, "right_a": 3, "right_b": 4, "only_a": 1, "only_b": 2, "p": 1.0}
    }
    assert "emotion right   3 against 4 of 5: right only with" in out
    assert f"only with {b} 2, exact McNemar p = 1.000" in out


def test_head_figures_are_split_by_where_the_landmarks_came_from():
    class Aligner:  # what head_detection reads of model.alignment.Aligner
        detected = {"a.jpg": True, "b.jpg": True, "c.jpg": False, "d.jpg": False}

        def recall(self):
            return {"with_mask": {"faces": 2, "detected": 1, "recall": 0.5},
                    "without_mask": {"faces": 2, "detected": 1, "recall": 0.5}}  # fmt: skip

    records = [FaceRecord(p, -1, -1) for p in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")]
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    run = {"aligner": Aligner(), "records": records, "labels": {"mask": np.array([0, 2, 0, 2])},
           "probs": {"mask": probs}}  # fmt: skip
    d = head_detection(run, "mask", calibrated=True)
    assert (d["faces"], d["detected"], d["recall"]) == (4, 2, 0.5)
    found, fallback = d["by_alignment"]["detected"], d["by_alignment"]["fallback"]
    assert (found["n"], found["accuracy"]) == (2, 1.0)
    assert (fallback["n"], fallback["accuracy"]) == (2, 0.5)
    assert fallback["recall"] == {"with_mask": 0.0, "without_mask": 1.0}


def test_a_model_listing_its_classes_in_another_order_is_read_by_name():
    probs = np.array([[0.1, 0.7, 0.2]])
    order = ["without_mask", "with_mask", "with_incorrect_mask"]
    assert in_class_order("mask", order, probs).tolist() == [[0.7, 0.2, 0.1]]
    with pytest.raises(ValueError, match="mask classes"):
        in_class_order("mask", ["masked", "bare", "half"], probs)
    extra = {"val_split": json.dumps({"seed": 4, "val_fraction": 0.15})}
    assert split_settings(extra, "utkface") == {"seed": 4, "val_fraction": 0.15}
    assert split_settings(extra, "mask", fraction=0.3) == {"seed": 4, "group_val_fraction": 0.3}


def test_mask_sets_evaluate_without_torch(tmp_path):
    data = _mask_set(tmp_path)
    model = _model(tmp_path / "m.onnx", mask=MASK_LEVELS)
    cmd = [sys.executable, "-c", "import sys; sys.modules['torch'] = None; "
           "from jobs.evaluate import main; sys.exit(main())"]  # fmt: skip
    res = subprocess.run(
        [*cmd, "--model", str(model), "--data", str(data)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "mask (8 faces): accuracy 75.00 %" in res.stdout


def _fer_slice(tar_out: Path, per_class: int) -> int:
    """The first ``per_class`` val faces of each emotion and a few training faces of the
    development FER-2013 archive, as a tar of the same layout; returns the val faces."""
    wanted = {("val", e): per_class for e in EMOTIONS} | {("train", "happy"): 3}
    src_path = SHARED_DATA / "fer2013-dev.tar.gz"
    with tarfile.open(src_path) as src, tarfile.open(tar_out, "w:gz") as dst:
        for member in src:
            parts = member.name.split("/")
            key = tuple(parts[1:3]) if len(parts) == 4 else None
            if member.isfile() and wanted.get(key, 0) > 0:
                wanted[key] -= 1
                dst.addfile(member, io.BytesIO(src.extractfile(member).read()))
            if not any(wanted.values()):
                break
    return per_class * len(EMOTIONS)


@needs_shared_data("fer2013-dev.tar.gz")
def test_real_fer_faces_are_detected_and_counted_per_class(tmp_path, capsys):
    """Real faces: the detector finds most, the fallback landmarks are learned on the set, and
    each class's faces are counted. (The figures of a trained emotion model are checked where
    one exists, on the full val set.)"""
    data = tmp_path / "fer-slice.tar.gz"
    n = _fer_slice(data, per_class=5)
    model = _model(tmp_path / "a.onnx", emotion=EMOTION_LEVELS)
    out_json = tmp_path / "m.json"
    code, out, err = _evaluate(
        capsys, "--model", model, "--data", data, "--split", "val", "--json", out_json
    )
    assert code == 0, err
    m = json.loads(out_json.read_text())
    d = m["detection"]
    assert m["n"] == d["faces"] == n == 35
    assert all(v["faces"] == 5 for v in d["per_class"].values()) and len(d["per_class"]) == 7
    assert d["fallback_landmarks"] == "learned on the set"
    assert 0.5 < d["recall"] <= 1.0 and np.sum(m["emotion"]["confusion"]) == 35
