"""Synthetic kiosk clips (simulation/, jobs.dev.simulate) on generated faces."""

import csv
import io
import json
import tarfile

import av
import cv2
import numpy as np
import pytest

from jobs.dev import simulate as simulate_cli
from model.datasets import split_records
from simulation import SimulationError
from simulation.clip_maker import RENDERER, render_clip
from simulation.figures import HEAD_TOP, HEAD_W, make_figure
from simulation.ground_truth import truth_path_for
from simulation.photos import held_out, open_faces, sample_faces
from simulation.render_options import RenderOptions


def _face_image(i: int) -> np.ndarray:
    img = np.full((64, 64, 3), 40 + 10 * i, np.uint8)
    cv2.ellipse(img, (32, 32), (22, 28), 0, 0, 360, (60 + 20 * i, 120, 200 - 15 * i), -1)
    cv2.circle(img, (24, 26), 3, (0, 0, 0), -1)
    cv2.circle(img, (40, 26), 3, (0, 0, 0), -1)
    return img


@pytest.fixture
def faces_csv(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "age", "gender"])
        for i in range(8):
            cv2.imwrite(str(folder / f"p{i}.png"), _face_image(i))
            w.writerow([f"p{i}.png", 20 + 5 * i, i % 2])  # model.datasets' manifest: 1 = female
    return folder / "labels.csv"


TINY = dict(
    width=320,
    height=240,
    fps=10.0,
    duration_s=3.0,
    visitors_max=2,
    walk_s=(0.3, 0.5),
    linger_s=(0.5, 1.0),
    gap_s=(0.1, 0.3),
    seed=1,
)


def test_tiny_clip_matches_its_options_and_truth(tmp_path, faces_csv):
    out = tmp_path / "tiny.mp4"
    truth = render_clip(out, open_faces(faces_csv), RenderOptions(**TINY))
    assert json.loads(truth_path_for(out).read_text()) == truth

    with av.open(str(out)) as c:
        s = c.streams.video[0]
        frames = [f for f in c.decode(s)]
        assert s.codec_context.name == "h264"
        assert float(s.average_rate) == pytest.approx(10.0)
    assert len(frames) == 30
    assert (frames[0].width, frames[0].height) == (320, 240)
    assert frames[-1].time == pytest.approx(2.9, abs=1e-6)
    assert frames[0].format.name == "yuv420p"

    clip = truth["clip"]
    assert (clip["file"], clip["width"], clip["height"]) == ("tiny.mp4", 320, 240)
    assert (clip["fps"], clip["frames"], clip["duration_s"]) == (10.0, 30, 3.0)
    assert clip["renderer"] == RENDERER
    vs = truth["visitors"]
    assert len(vs) >= 2
    assert len({v["face"] for v in vs}) == len(vs)  # distinct people
    for v in vs:
        assert v["gender"] in ("male", "female")
        assert 0 <= v["appear_s"] <= v["enter_s"] < v["leave_s"] <= v["disappear_s"] <= 3.0
        assert v["boxes"] and all(
            0 <= b[1] < b[3] <= 320 and 0 <= b[2] < b[4] <= 240 for b in v["boxes"]
        )
    for t in np.arange(30) / 10:
        assert sum(v["appear_s"] <= t <= v["disappear_s"] for v in vs) <= TINY["visitors_max"]


def test_render_is_deterministic_and_draws_faces(tmp_path, faces_csv):
    opt = dict(TINY, visitors_max=1)
    a = render_clip(tmp_path / "a.mp4", open_faces(faces_csv), RenderOptions(**opt))
    b = render_clip(tmp_path / "b.mp4", open_faces(faces_csv), RenderOptions(**opt))
    a["clip"].pop("file"), b["clip"].pop("file")
    assert a == b
    c = render_clip(tmp_path / "c.mp4", open_faces(faces_csv), RenderOptions(**dict(opt, seed=2)))
    assert c["visitors"] != a["visitors"]
    # mid-linger, the face box differs from the background (something was drawn there)
    v = a["visitors"][0]
    t, x1, y1, x2, y2 = v["boxes"][len(v["boxes"]) // 2]
    with av.open(str(tmp_path / "a.mp4")) as cont:
        imgs = [f.to_ndarray(format="bgr24") for f in cont.decode(video=0)]
    face = imgs[round(t * 10)][int(y1) : int(y2), int(x1) : int(x2)].astype(int)
    empty = imgs[0][int(y1) : int(y2), int(x1) : int(x2)].astype(int)
    assert np.abs(face - empty).mean() > 20


def test_visitor_keeps_the_whole_face_image_with_its_own_hair():
    """The face image is drawn whole, hair and ears included; only its corners are rounded. (An
    oval cut-out under a drawn hair cap gave men a bob, and the model read them as women.)"""
    k = 100
    chip = np.full((k, k, 3), (30, 60, 200), np.uint8)  # red hair (BGR) on top
    chip[20:] = (40, 160, 60)  # green at the sides, unlike anything drawn around the image
    chip[25:, 20:80] = (120, 150, 190)  # the face
    figure = make_figure(chip, k, np.random.default_rng(0))
    x0, y0 = round(HEAD_W * k / 2 - k / 2), round(HEAD_TOP * k - k / 2)
    alpha = figure.alpha[y0 : y0 + k, x0 : x0 + k]
    drawn = figure.premul[y0 : y0 + k, x0 : x0 + k]
    # the image's hair at its sides and top, which the oval cut away, is there untouched
    for y, x in ((8, 50), (50, 5), (50, 94), (12, 12)):
        assert alpha[y, x] == 255, (y, x)
        assert np.abs(drawn[y, x].astype(int) - chip[y, x]).max() <= 1, (y, x)
    assert np.abs(drawn[60, 50].astype(int) - chip[60, 50]).max() <= 1
    assert alpha[0, 0] < 128  # the corner is rounded off
    # hair seen above the image takes the colour of its top rows
    above = figure.premul[y0 - 5, x0 + k // 2]
    assert np.abs(above.astype(int) - chip[0, 0]).max() <= 2


def test_mpeg4_and_no_visitors(tmp_path, faces_csv):
    opt = RenderOptions(**dict(TINY, codec="mpeg4", visitors_max=0))
    truth = render_clip(tmp_path / "empty.avi", open_faces(faces_csv), opt)
    assert truth["visitors"] == [] and truth["clip"]["codec"] == "mpeg4"
    with av.open(str(tmp_path / "empty.avi")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 30


def test_utkface_sources(tmp_path):
    names = [f"{20 + i}_{i % 2}_0_2017011717{i:04d}.jpg.chip.jpg" for i in range(4)]
    names.append("24_0_1_20170116220224657 .jpg.chip.jpg")  # the release has a space in some
    names.append("39_1_20170116174525125.jpg.chip.jpg")  # a field missing: skipped
    ok, png = cv2.imencode(".jpg", _face_image(1))
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    tar_path = tmp_path / "utk.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for n in names:
            (folder / n).write_bytes(png.tobytes())
            info = tarfile.TarInfo(f"UTKFace/{n}")
            info.size = len(png)
            tar.addfile(info, io.BytesIO(png.tobytes()))
    for path, prefix in ((tar_path, "UTKFace/"), (folder, "")):
        with pytest.warns(UserWarning, match="malformed UTKFace name"):
            src = open_faces(path)
        assert len(src) == 5
        assert {r.key for r in src.records} == set(names[:5])  # basenames, as jobs.bench uses
        picked = sample_faces(src, 3, seed=4)
        assert [f.key for f in picked] == [f.key for f in sample_faces(src, 3, seed=4)]
        assert len({f.key for f in picked}) == 3 and picked[0].image.shape == (64, 64, 3)
        assert picked[0].image.dtype == np.uint8
        labels = {f.key: (f.age, f.gender) for f in sample_faces(src, 5, seed=0)}
        assert labels[prefix + names[1]] == (21, "female")
        assert labels[prefix + names[4]] == (24, "male")
        with pytest.raises(SimulationError, match="only 5"):
            sample_faces(src, 6, seed=0)


def test_held_out_keeps_the_training_validation_split(tmp_path):
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    ok, jpg = cv2.imencode(".jpg", _face_image(1))
    for i in range(40):
        (folder / f"{20 + i}_{i % 2}_0_2017011717{i:04d}.jpg.chip.jpg").write_bytes(jpg.tobytes())
    config = tmp_path / "train.yaml"
    config.write_text("data: {split_seed: 3, val_fraction: 0.3}\n")
    train, val = split_records(open_faces(folder).records, seed=3, val_fraction=0.3)
    assert 0 < len(val) < 40  # both sides non-empty, so the filter is doing something
    kept = held_out(open_faces(folder), config)
    assert [r.key for r in kept.records] == sorted(r.key for r in val)
    config.write_text("data: {split_seed: 3, val_fraction: 0.0}\n")
    with pytest.raises(SimulationError, match="no faces .* validation split"):
        held_out(open_faces(folder), config)
    with pytest.raises(SimulationError, match="cannot read the validation split"):
        held_out(open_faces(folder), tmp_path / "missing.yaml")

    # the CLI flag uses config/train.yaml's split: every rendered face is one of its val faces
    _, val = split_records(open_faces(folder).records, seed=0, val_fraction=0.1)
    out = tmp_path / "new" / "held.mp4"  # the folder is created
    argv = ["--faces", str(folder), "--out", str(out), "--seconds", "30", "--size", "160x96"]
    assert simulate_cli.main([*argv, "--fps", "5", "--visitors-total", "2", "--held-out"]) == 0
    faces = {v["face"] for v in json.loads(truth_path_for(out).read_text())["visitors"]}
    assert faces and faces <= {r.path for r in val}


def test_face_source_errors(tmp_path, faces_csv):
    # a folder holding one CSV reads that CSV; the face image is BGR as written
    src = open_faces(faces_csv.parent)
    assert len(src) == 8
    face = next(f for f in sample_faces(src, 8, seed=0) if f.key == "p3.png")
    assert (face.age, face.gender) == (35, "female")
    assert np.abs(face.image.astype(int) - _face_image(3)).max() <= 1
    # rows without a gender cannot give a truth label: skipped
    with open(faces_csv, "a", newline="") as fh:
        csv.writer(fh).writerow(["p0.png", 30, ""])
    assert len(open_faces(faces_csv)) == 8
    (faces_csv.parent / "other.csv").write_text("path,age,gender\n")
    with pytest.raises(SimulationError, match="several CSV"):
        open_faces(faces_csv.parent)
    words = tmp_path / "words.csv"
    words.write_text("path,age,gender\nfaces/p0.png,20,male\n")
    with pytest.warns(UserWarning), pytest.raises(SimulationError, match="0 = male") as exc:
        open_faces(words)
    assert "\n" not in str(exc.value)
    (tmp_path / "noheader.csv").write_text("file,age\nx.png,3\n")
    with pytest.raises(SimulationError, match="path,age,gender"):
        open_faces(tmp_path / "noheader.csv")
    (tmp_path / "missing.csv").write_text("path,age,gender\nnope.png,20,0\n")
    with pytest.raises(SimulationError, match="cannot read face image"):
        sample_faces(open_faces(tmp_path / "missing.csv"), 1, seed=0)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "bad.csv").write_text("path,age,gender\nbad.png,20,1\n")
    with pytest.raises(SimulationError, match="cannot decode"):
        sample_faces(open_faces(tmp_path / "bad.csv"), 1, seed=0)
    with pytest.raises(SimulationError, match="not found"):
        open_faces(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SimulationError, match="no images"):
        open_faces(tmp_path / "empty")


def test_simulate_cli(tmp_path, faces_csv, capsys):
    out = tmp_path / "cli.mp4"
    args = ["--faces", str(faces_csv), "--out", str(out), "--seconds", "2", "--size", "160x120"]
    args += ["--fps", "10", "--linger", "0.5:1", "--walk", "0.3:0.5", "--visitors-max", "1"]
    assert simulate_cli.main(args) == 0
    truth = json.loads((tmp_path / "cli.truth.json").read_text())
    assert truth["clip"]["frames"] == 20 and truth["clip"]["width"] == 160
    errors = []
    for bad in (["--size", "161x120"], ["--codec", "vp9000"], ["--faces", str(tmp_path / "x")]):
        assert simulate_cli.main(args + bad) == 2
        errors.append(capsys.readouterr().err)
        assert errors[-1].startswith("error: ") and errors[-1].count("\n") == 1, errors[-1]
    assert "size must be even" in errors[0]
    with pytest.raises(SystemExit) as exc:
        simulate_cli.main(args + ["--size", "big"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1


def test_render_refuses_bad_output_paths(tmp_path, faces_csv):
    faces = open_faces(faces_csv)
    opt = RenderOptions(width=64, height=48, fps=5, duration_s=1, seed=0)
    with pytest.raises(SimulationError, match=r"use a \.mp4"):
        render_clip(tmp_path / "clip.gif", faces, opt)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SimulationError, match="cannot create output folder"):
        render_clip(tmp_path / "file" / "sub" / "clip.mp4", faces, opt)
