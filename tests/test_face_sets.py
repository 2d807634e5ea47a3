"""The labelled face sets: emotion folders and mask crops read into records, bad rows and
unknown classes skipped with a count, splits by folder and by photo, and the sets' faces
aligned as the video pipeline aligns them."""

import csv
import tarfile

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, needs_shared_data

from model import datasets
from model.face_sets import face_set_kind, read_face_set
from schemas.model_file import CLASS_NAMES


def _jpeg(path, value=128, size=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), value, np.uint8))


def test_emotion_folders_keep_their_split_and_skip_unknown_classes(tmp_path):
    root = tmp_path / "fer2013"
    for split, emotion in [("train", "happy"), ("train", "disgust"), ("val", "sad")]:
        _jpeg(root / split / emotion / f"{split}_{emotion}.jpg")
    _jpeg(root / "train" / "bored" / "x.jpg")  # not an emotion the model knows
    with pytest.warns(UserWarning, match="skipped 1 image"):
        kind, records = read_face_set(tmp_path)
    assert kind == "emotion"
    got = {(r.split, CLASS_NAMES["emotion"][r.emotion]) for r in records}
    assert got == {("train", "happy"), ("train", "disgust"), ("val", "sad")}
    assert all(r.age == -1 and r.gender == -1 and r.mask == -1 for r in records)
    train, val = datasets.split_records(records, seed=0, val_fraction=0.9)  # its own split wins
    assert [r.split for r in val] == ["val"] and len(train) == 2


def _mask_set(root, rows):
    root.mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "photo", "x1", "y1", "x2", "y2"])
        for file, label, photo, box in rows:
            w.writerow([file, label, photo, *box])
            if not file.startswith("missing"):
                _jpeg(root / file, size=96)


def test_mask_crops_are_read_with_boxes_and_bad_rows_counted(tmp_path):
    rows = [
        ("with_mask/p1_0.jpg", "with_mask", "p1", (10, 12, 60, 70)),
        ("with_mask/p1_1.jpg", "with_mask", "p1", (5, 5, 50, 50)),
        ("without_mask/p2_0.jpg", "without_mask", "p2", (10, 10, 40, 40)),
        ("with_incorrect_mask/p3_0.jpg", "with_incorrect_mask", "p3", (1, 2, 3, 4)),
        ("odd/p4_0.jpg", "half_mask", "p4", (1, 2, 30, 40)),  # unknown label
        ("with_mask/p5_0.jpg", "with_mask", "p5", (30, 30, 10, 10)),  # empty box
        ("missing/p6_0.jpg", "with_mask", "p6", (1, 1, 20, 20)),  # no image
    ]
    _mask_set(tmp_path / "masks", rows)
    with tarfile.open(tmp_path / "masks.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "masks", arcname="masks")
    for source in (tmp_path / "masks", tmp_path / "masks.tar.gz"):
        with pytest.warns(UserWarning, match="skipped 3 row"):
            kind, records = read_face_set(source)
        assert kind == "mask"
        labels = [CLASS_NAMES["mask"][r.mask] for r in records]
        assert labels == ["with_mask", "with_mask", "without_mask", "with_incorrect_mask"]
        assert records[0].box == (10.0, 12.0, 60.0, 70.0) and records[0].group == "p1"
    # Faces of one photo fall on one side of the split, whatever the seed.
    for seed in range(20):
        train, val = datasets.split_records(records, seed, 0.5)
        sides = {r.path: r in val for r in records}
        assert sides[records[0].path] == sides[records[1].path]


def test_a_utkface_folder_is_told_apart_from_the_other_sets(tmp_path):
    _jpeg(tmp_path / "UTKFace" / "25_0_1_20170101.jpg.chip.jpg")
    assert face_set_kind(tmp_path) == "utkface"


@needs_shared_data("masks-dev.tar.gz", "UTKFace-dev.tar.gz")
def test_mask_crops_are_aligned_onto_the_template_from_detected_or_box_landmarks():
    from model.alignment import Aligner, chip_detector, crop_template, relative_landmarks

    utk = SHARED_DATA / "UTKFace-dev.tar.gz"
    train, _ = datasets.split_records(datasets.scan_utkface(utk), 0, 0.1)
    template = crop_template(utk, train, 100, 80, 1.0)[0]
    masks = SHARED_DATA / "masks-dev.tar.gz"
    _, records = read_face_set(masks)
    detector = chip_detector()
    relative = relative_landmarks(records, masks, detector)
    # Eyes above the nose above the mouth, as fractions of the face box.
    assert relative[0, 1] < relative[2, 1] < relative[3, 1] and relative[0, 0] < relative[1, 0]
    aligner = Aligner(template, 80, detector, relative)
    images, ok = datasets.load_images(records[::40], masks, 80, prepare=aligner)
    assert ok.all() and images.shape[1:] == (80, 80, 3) and images.std() > 20
    recall = aligner.recall()
    faces = sum(v["faces"] for v in recall.values())
    assert faces == len(records[::40]) and 0.5 < recall["with_mask"]["recall"] <= 1.0
