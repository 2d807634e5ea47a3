"""Synthetic clips with visitors from an emotion set and a mask set (simulation.photos,
simulation.face_crops, jobs.dev.simulate --faces ... --faces ...), on tiny generated sets."""

import csv
import hashlib
import json
import tarfile

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, needs_shared_data

from jobs.dev import simulate as simulate_cli
from model.datasets import split_records
from schemas.model_file import CLASS_NAMES
from simulation import SimulationError
from simulation.clip_maker import render_clip
from simulation.face_crops import CHIP_PX, cut_square, mask_chip_square
from simulation.ground_truth import truth_path_for
from simulation.photos import FaceMix, held_out, open_faces, sample_faces
from simulation.render_options import RenderOptions

SHORT = ["--seconds", "4", "--size", "160x120", "--fps", "5", "--visitors-max", "2"]
SHORT += ["--linger", "0.5:1", "--walk", "0.3:0.5", "--gap", "0.1:0.3"]


def _face(i: int, size: int = 64) -> np.ndarray:
    """A face-like BGR image, different for each ``i`` below 10."""
    i %= 10
    img = np.full((size, size, 3), 40 + 10 * i, np.uint8)
    c, r = size // 2, size * 11 // 32
    cv2.ellipse(img, (c, c), (r, r * 9 // 7), 0, 0, 360, (60 + 20 * i, 120, 200 - 15 * i), -1)
    cv2.circle(img, (c - r // 3, c - r // 3), max(1, size // 20), (0, 0, 0), -1)
    cv2.circle(img, (c + r // 3, c - r // 3), max(1, size // 20), (0, 0, 0), -1)
    return img


def _utk_csv(folder, n: int = 8):
    folder.mkdir()
    with open(folder / "faces.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "age", "gender"])
        for i in range(n):
            cv2.imwrite(str(folder / f"p{i}.png"), _face(i))
            w.writerow([f"p{i}.png", 20 + 5 * (i % 8), i % 2])
    return folder / "faces.csv"


def _emotion_set(root):
    """FER-2013's layout: 48 px grayscale faces in <split>/<emotion>/ folders."""
    emotions = ["happy", "sad", "surprise", "angry", "neutral", "fear"]
    for split, n in (("train", 4), ("val", 6)):
        for i in range(n):
            folder = root / split / emotions[i]
            folder.mkdir(parents=True, exist_ok=True)
            grey = cv2.cvtColor(_face(i + 10 * (split == "val"), 48), cv2.COLOR_BGR2GRAY)
            cv2.imwrite(str(folder / f"{split}{i}.png"), grey)
    return root


# The face box inside every mask crop: the crop is the box grown 50 % each side, as masks-dev's.
CROP_W, CROP_H, BOX = 96, 120, (24.0, 30.0, 72.0, 90.0)


def _mask_set(tmp_path, photos: int = 24):
    """labels.csv + loose crops in <label>/ folders, one or two crops per photo, as a folder and
    as a .tar.gz of it."""
    root = tmp_path / "masks"
    rows = []
    for p in range(photos):
        for k in range(1 + p % 2):
            label = CLASS_NAMES["mask"][(p + k) % 3]
            crop = np.full((CROP_H, CROP_W, 3), (30 * k, 90, 160), np.uint8)
            x1, y1, x2, y2 = (int(v) for v in BOX)
            crop[y1:y2, x1:x2] = cv2.resize(_face(p % 9), (x2 - x1, y2 - y1))
            (root / label).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / label / f"ph{p}_{k}.png"), crop)
            rows.append([f"{label}/ph{p}_{k}.png", label, f"ph{p}", *BOX])
    with open(root / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "label", "photo", "x1", "y1", "x2", "y2"], *rows])
    tar_path = tmp_path / "masks.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(root, arcname="masks")
    return root, tar_path


def test_emotion_set_faces_carry_their_emotion_and_no_age(tmp_path):
    src = open_faces(_emotion_set(tmp_path / "fer"))
    assert (src.kind, len(src)) == ("emotion", 10)
    faces = sample_faces(src, 10, seed=0)
    for f in faces:
        assert f.emotion == f.key.split("/")[-2] and f.mask is None
        assert (f.age, f.gender) == (None, None)
        # 48 px grey, enlarged to a chip's size; still grey
        assert f.image.shape == (CHIP_PX, CHIP_PX, 3)
        assert np.array_equal(f.image[..., 0], f.image[..., 2])
    # held out: only the set's own val folder, never train (config/train.yaml's fractions unused)
    kept = held_out(src)
    emotions = ["happy", "sad", "surprise", "angry", "neutral", "fear"]
    val = sorted(f"val/{e}/val{i}.png" for i, e in enumerate(emotions))
    assert sorted(r.path for r in kept.records) == val


def test_mask_crop_is_cut_around_its_face_box():
    # chip side 1.2 x the box width, centred on the box, 5 % of the side lower
    x0, y0, side = mask_chip_square(BOX)
    assert side == pytest.approx(57.6)
    assert (x0 + side / 2, y0 + side / 2) == pytest.approx((48.0, 60.0 + 0.05 * 57.6))
    # a ramp image (channel 0 = x, channel 1 = y) shows where each chip pixel samples
    ramp = np.zeros((CROP_H, CROP_W, 3), np.uint8)
    ramp[..., 0] = np.arange(CROP_W)[None, :]
    ramp[..., 1] = np.arange(CROP_H)[:, None]
    chip = cut_square(ramp, (x0, y0, side)).astype(float)
    assert chip.shape == (CHIP_PX, CHIP_PX, 3)
    step = side / CHIP_PX
    for i in (0, 100, 199):
        assert chip[i, i, 0] == pytest.approx(x0 + (i + 0.5) * step - 0.5, abs=0.6)
        assert chip[i, i, 1] == pytest.approx(y0 + (i + 0.5) * step - 0.5, abs=0.6)
    # a square running off the crop repeats its edge pixels
    assert chip[0, 0, 0] > 0 and cut_square(ramp, (-10.0, 0.0, 20.0))[50, 0, 0] == 0


def test_mask_set_faces_and_their_held_out_photos(tmp_path):
    root, tar_path = _mask_set(tmp_path)
    src = open_faces(tar_path)
    assert (src.kind, len(src)) == ("mask", 36)
    by_folder = open_faces(root / "labels.csv")  # the folder, named by its labels.csv
    assert by_folder.kind == "mask" and [r.path for r in by_folder.records] == [
        r.path.removeprefix("masks/") for r in src.records
    ]
    faces = sample_faces(src, 5, seed=1)
    again = sample_faces(by_folder, 5, seed=1)
    for f, g in zip(faces, again, strict=True):
        assert f.mask == f.key.split("/")[-2] and f.emotion is None
        assert (f.age, f.gender) == (None, None)
        assert f.image.shape == (CHIP_PX, CHIP_PX, 3) and np.array_equal(f.image, g.image)
        # the chip's centre is the face's (its oval's colour), its edges the crop's background
        i = int(f.key.split("/ph")[1].split("_")[0]) % 9
        assert np.abs(f.image[100, 100].astype(int) - (60 + 20 * i, 120, 200 - 15 * i)).max() < 4
        k = int(f.key[-5])
        assert np.abs(f.image[100, 0].astype(int) - (30 * k, 90, 160)).max() < 4

    # held out: the photos training validates on (group_val_fraction, hash of the photo)
    config = tmp_path / "train.yaml"
    config.write_text("data: {split_seed: 2, val_fraction: 0.0, group_val_fraction: 0.4}\n")
    _, val = split_records(src.records, seed=2, val_fraction=0.4)
    kept = held_out(src, config)
    assert 0 < len(kept) < len(src) and kept.records == val
    photos_kept = {r.group for r in kept.records}
    assert all((r.group in photos_kept) == (r in val) for r in src.records)  # whole photos
    config.write_text("data: {split_seed: 2, val_fraction: 0.4}\n")
    with pytest.raises(SimulationError, match="group_val_fraction"):
        held_out(src, config)


def test_mixed_clip_truth_labels_each_visitor_from_its_set(tmp_path, capsys):
    faces = _utk_csv(tmp_path / "utk", n=40)  # 4 of them in the validation split
    fer = _emotion_set(tmp_path / "fer")
    _, masks = _mask_set(tmp_path)
    out = tmp_path / "mixed.mp4"
    argv = ["--faces", str(faces), "--faces", str(fer), "--faces", str(masks), "--out", str(out)]
    argv += [*SHORT, "--seconds", "8", "--visitors-total", "6", "--held-out", "--seed", "4"]
    assert simulate_cli.main(argv) == 0
    assert "6 visitors" in capsys.readouterr().out
    visitors = json.loads(truth_path_for(out).read_text())["visitors"]
    by_source = {}
    for v in visitors:
        by_source.setdefault(v["source"], []).append(v)
    # equal shares: two visitors from each set
    assert {s: len(vs) for s, vs in by_source.items()} == {
        str(faces): 2,
        str(fer): 2,
        str(masks): 2,
    }
    utk_val = {r.path for r in split_records(open_faces(faces).records, 0, 0.1)[1]}
    for v in by_source[str(faces)]:
        assert v["face"] in utk_val and v["age"] == 20 + 5 * (int(v["face"][1:-4]) % 8)
        assert v["gender"] == ("male", "female")[int(v["face"][1:-4]) % 2]
        assert "mask" not in v and "emotion" not in v
    for v in by_source[str(fer)]:
        assert (v["age"], v["gender"]) == (None, None) and "mask" not in v
        assert v["face"].startswith("val/") and v["emotion"] == v["face"].split("/")[1]
    mask_val = {r.path for r in split_records(open_faces(masks).records, 0, 0.2)[1]}
    for v in by_source[str(masks)]:
        assert (v["age"], v["gender"]) == (None, None) and "emotion" not in v
        assert v["face"] in mask_val and v["mask"] == v["face"].split("/")[1]
    # the keys in the written order: labels right after the face
    assert list(by_source[str(fer)][0])[:6] == ["id", "age", "gender", "face", "source", "emotion"]

    assert simulate_cli.main([*argv[:2], *argv[2:4], "--faces", str(fer), *argv[6:]]) == 2
    assert "given more than once" in capsys.readouterr().err


# The truths of these clips as the renderer wrote them before visitors could come from emotion and
# mask sets (commit 168175a; the clips' bytes matched too, but an encoder build may differ): a
# clip of UTKFace or face-list faces must stay the same, so that earlier scores still compare.
TINY_ARGS = [*SHORT, "--seed", "3"]
TINY_TRUTH_SHA256 = "5ad6d2b709a2fca7aed75ea4c9d28669a661ec37a2241bc0d810c7e95a166c6e"
UTKFACE_ARGS = ["--seconds", "6", "--size", "320x180", "--fps", "5", "--seed", "7", "--held-out"]
UTKFACE_TRUTH_SHA256 = "551dc5df56bf8253266909fe4752aef893bda1a7d1bd17a9b55c833059d17716"


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_source_renders_the_clip_it_always_did(tmp_path):
    faces = _utk_csv(tmp_path / "utk")
    out = tmp_path / "tiny.mp4"
    assert simulate_cli.main(["--faces", str(faces), "--out", str(out), *TINY_ARGS]) == 0
    assert _sha256(truth_path_for(out)) == TINY_TRUTH_SHA256
    # a mix of one source draws exactly as the source alone
    src = open_faces(faces)
    assert [f.key for f in FaceMix([src]).cast(5, 3)] == [f.key for f in sample_faces(src, 5, 3)]
    opt = RenderOptions(160, 120, 5.0, 4.0, seed=3, visitors_max=2, walk_s=(0.3, 0.5),
                        linger_s=(0.5, 1.0), gap_s=(0.1, 0.3))  # fmt: skip
    render_clip(tmp_path / "direct" / "tiny.mp4", src, opt)
    assert (tmp_path / "direct" / "tiny.mp4").read_bytes() == out.read_bytes()
    assert _sha256(tmp_path / "direct" / "tiny.truth.json") == TINY_TRUTH_SHA256


@needs_shared_data("UTKFace-dev.tar.gz")
def test_utkface_clip_is_byte_identical(tmp_path):
    out = tmp_path / "utk.mp4"
    faces = str(SHARED_DATA / "UTKFace-dev.tar.gz")
    assert simulate_cli.main(["--faces", faces, "--out", str(out), *UTKFACE_ARGS, "--quiet"]) == 0
    assert _sha256(truth_path_for(out)) == UTKFACE_TRUTH_SHA256
    opt = RenderOptions(320, 180, 5.0, 6.0, seed=7)
    render_clip(tmp_path / "direct" / "utk.mp4", held_out(open_faces(faces)), opt)
    assert (tmp_path / "direct" / "utk.mp4").read_bytes() == out.read_bytes()


def test_face_set_errors(tmp_path):
    root, _ = _mask_set(tmp_path, photos=2)
    (root / "labels.csv").write_text("file,label,photo,x1,y1,x2,y2\nnope.png,with_mask,a,1,1,2,2\n")
    with pytest.warns(UserWarning, match="skipped 1 row"), pytest.raises(SimulationError) as exc:
        open_faces(root)
    assert "no usable rows" in str(exc.value) and "\n" not in str(exc.value)
    fer = _emotion_set(tmp_path / "fer")
    src = open_faces(fer)
    with pytest.raises(SimulationError, match="need 7 distinct faces but .* has only 6"):
        FaceMix([held_out(src), open_faces(_utk_csv(tmp_path / "utk"))]).cast(14, seed=0)
    with pytest.raises(SimulationError, match="no face source"):
        FaceMix([])
    (tmp_path / "x.bin").write_bytes(b"x")
    with pytest.raises(SimulationError, match="expected a .tar.gz"):
        open_faces(tmp_path / "x.bin")


@needs_shared_data("fer2013-dev.tar.gz", "masks-dev.tar.gz")
def test_real_emotion_and_mask_sets_held_out():
    fer = held_out(open_faces(SHARED_DATA / "fer2013-dev.tar.gz"))
    assert len(fer) == 3589 and all(r.path.startswith("fer2013/val/") for r in fer.records)
    masks = open_faces(SHARED_DATA / "masks-dev.tar.gz")
    kept = held_out(masks)
    assert kept.records == split_records(masks.records, 0, 0.2)[1]
    assert 0.1 < len(kept) / len(masks) < 0.3  # about group_val_fraction of the photos
    for f in sample_faces(kept, 3, seed=0) + sample_faces(fer, 3, seed=0):
        assert f.image.shape == (CHIP_PX, CHIP_PX, 3) and (f.mask is None) != (f.emotion is None)
