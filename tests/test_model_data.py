"""Loaders (UTKFace folder/tar, manifest), split, preprocessing and the crop template."""

import tarfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from model import datasets
from model.preprocess import chip_to_input_matrix, normalize, prepare_chip
from model.template import average_landmarks, estimate_template, symmetrize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GOOD = ["25_0_0_20170101000000001.jpg.chip.jpg", "3_1_2_20170101000000002.jpg.chip.jpg"]
GOOD += ["116_1_4_20170101000000003.jpg.chip.jpg"]
BAD = ["39_1_20170116174525125.jpg.chip.jpg", "notaface.jpg"]


def _write_faces(folder: Path, names, size=40):
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        img = np.full((size, size, 3), 40 * i, np.uint8)
        cv2.imwrite(str(folder / n), img)


def test_parse_names():
    r = datasets.parse_utkface_name("UTKFace/25_1_3_20170101.jpg.chip.jpg")
    assert (r.age, r.gender, r.race) == (25, 1, 3)
    assert datasets.parse_utkface_name("116_0_0_1.jpg.chip.jpg").age == 100  # clipped
    assert datasets.parse_utkface_name("24_0_1_20170116220224657 .jpg.chip.jpg").age == 24
    assert datasets.parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg") is None
    assert datasets.parse_utkface_name("25_2_0_1.jpg.chip.jpg") is None


def test_folder_and_tar_skip_malformed_with_warning(tmp_path):
    _write_faces(tmp_path / "UTKFace", GOOD + BAD)
    with pytest.warns(UserWarning, match="skipped 2 file"):
        recs = datasets.scan_utkface(tmp_path)
    assert sorted(r.key for r in recs) == sorted(GOOD)
    assert {r.key: r.gender for r in recs}[GOOD[1]] == 1
    tar = tmp_path / "faces.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(tmp_path / "UTKFace", arcname="UTKFace")
    with pytest.warns(UserWarning, match="malformed"):
        trecs = datasets.scan_utkface(tar)
    assert sorted(r.path for r in trecs) == sorted(f"UTKFace/{n}" for n in GOOD)
    a, ok_a = datasets.load_images(recs, tmp_path, 16)
    b, ok_b = datasets.load_images(trecs, tar, 16)
    assert a.shape == (3, 16, 16, 3) and ok_a.all() and ok_b.all()
    order = {r.key: i for i, r in enumerate(trecs)}
    assert np.array_equal(a, b[[order[r.key] for r in recs]])


def test_bad_sources(tmp_path):
    with pytest.raises(datasets.DataError, match="not found"):
        datasets.scan_utkface(tmp_path / "missing.tar.gz")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(datasets.DataError, match="cannot read archive"):
        datasets.scan_utkface(bad)


def test_manifest(tmp_path):
    _write_faces(tmp_path / "img", ["a.jpg", "b.png"])
    csv = tmp_path / "faces.csv"
    csv.write_text("path,age,gender\nimg/a.jpg,31,1\nimg/b.png,7,0\nimg/c.jpg,x,0\n")
    with pytest.warns(UserWarning, match="skipped"):
        recs = datasets.read_face_list(csv)
    assert [(r.path, r.age, r.gender, r.race) for r in recs] == [
        ("img/a.jpg", 31, 1, -1),
        ("img/b.png", 7, 0, -1),
    ]
    images, ok = datasets.load_images(recs, datasets.image_root(None, csv), 8)
    assert ok.all() and images.shape == (2, 8, 8, 3)
    (tmp_path / "bad.csv").write_text("file,years\n")
    with pytest.raises(datasets.DataError, match="path,age,gender"):
        datasets.read_face_list(tmp_path / "bad.csv")


def test_split_is_stable_and_seeded():
    recs = [datasets.FaceRecord(f"d/{i}_0_0_1.jpg", i % 90, i % 2) for i in range(2000)]
    tr, va = datasets.split_records(recs, 0, 0.1)
    assert len(tr) + len(va) == 2000 and 150 < len(va) < 250
    tr2, va2 = datasets.split_records(list(reversed(recs)), 0, 0.1)
    assert {r.key for r in va} == {r.key for r in va2}
    _, va3 = datasets.split_records(recs, 1, 0.1)
    assert {r.key for r in va} != {r.key for r in va3}


def test_cache_roundtrip(tmp_path):
    _write_faces(tmp_path / "UTKFace", GOOD)
    recs = datasets.scan_utkface(tmp_path)
    a, _ = datasets.cached_images(recs, tmp_path, 12, 0.875, tmp_path / "cache")
    b, _ = datasets.cached_images(recs, tmp_path, 12, 0.875, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1 and np.array_equal(a, b)


def test_prepare_and_normalize():
    chip = np.zeros((200, 200, 3), np.uint8)
    chip[:, 100:] = 255
    out = prepare_chip(chip, 80, 0.875)
    assert out.shape == (80, 80, 3) and out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    x = normalize(out, (0.5,) * 3, (0.25,) * 3)
    assert x.shape == (1, 3, 80, 80) and x.dtype == np.float32
    assert x[0, 0, 0, 0] == pytest.approx(-2.0) and x[0, 0, 0, -1] == pytest.approx(2.0)


def test_template_mapping_and_averaging():
    # chip centre (99.5, 99.5) maps to the input centre (39.5, 39.5) with pixel-centre convention
    m = chip_to_input_matrix(200, 200, 80, 0.875)
    assert m @ [99.5, 99.5, 1] == pytest.approx([39.5, 39.5])
    base = np.array([[70, 90], [130, 90], [100, 120], [75, 150], [125, 150]], float)
    rng = np.random.default_rng(0)
    sets = base + rng.normal(0, 1, (200, 5, 2))
    sets[0] = base[[1, 0, 2, 4, 3]]  # left/right swapped: implausible, dropped
    sets[1] += 60  # outlier, dropped
    avg = average_landmarks(sets)
    assert np.abs(avg - base).max() < 0.5
    sym = symmetrize(base + [[2, 0], [2, 0], [2, 0], [2, 0], [2, 0]], 200)
    assert sym[0, 0] + sym[1, 0] == pytest.approx(199) and sym[2, 0] == pytest.approx(99.5)
    t = estimate_template(sets[2:], (200, 200), 80, 0.875)
    expect = (base + 0.5 - 12.5) * 80 / 175 - 0.5
    assert np.abs(t - expect).max() < 0.3


@pytest.mark.skipif(
    not (SHARED / "UTKFace-dev.tar.gz").is_file(), reason="shared UTKFace-dev data absent"
)
def test_dev_tar_has_three_malformed_names():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        recs = datasets.scan_utkface(SHARED / "UTKFace-dev.tar.gz")
    assert len(recs) == 20704
    assert any("skipped 3 file" in str(x.message) for x in w)


def test_pack_keeps_names_labels_and_split(tmp_path):
    """jobs.dev.pack shrinks every chip to --size WebP under its own name, so the records and the
    seeded validation split read from the pack are those of the source."""
    from jobs.dev import pack

    rng = np.random.default_rng(0)
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    names = [f"{20 + i}_{i % 2}_0_2017010100000{i:04d}.jpg.chip.jpg" for i in range(12)]
    for n in names:
        cv2.imwrite(str(folder / n), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    out = tmp_path / "packed.tar.gz"
    assert pack.main(["--data", str(tmp_path), "--size", "48", "--out", str(out)]) == 0
    source, packed = datasets.scan_utkface(tmp_path), datasets.scan_utkface(out)
    assert sorted(r.key for r in packed) == sorted(names)
    assert {r.key: (r.age, r.gender) for r in packed} == {r.key: (r.age, r.gender) for r in source}
    split = [r.key for r in datasets.split_records(packed, 0, 0.3)[1]]
    assert split == [r.key for r in datasets.split_records(source, 0, 0.3)[1]]
    images, ok = datasets.load_images(packed, out, 48)
    assert ok.all() and images.shape == (12, 48, 48, 3)
    with tarfile.open(out) as t:
        first = t.extractfile(t.getmembers()[0]).read()
    assert first[:4] == b"RIFF" and first[8:12] == b"WEBP"
