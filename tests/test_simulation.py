"""Synthetic kiosk clips (simulation/, jobs.simulate) and scoring (jobs.score) on generated data."""

import csv
import datetime as dt
import io
import json
import tarfile

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import score as score_cli
from jobs import simulate as simulate_cli
from pipelines.tables import publish
from schemas import TABLES
from simulation import SimulationError
from simulation.faces import open_faces, sample_faces
from simulation.render import (
    HEAD_TOP,
    HEAD_W,
    RENDERER,
    RenderOptions,
    make_person,
    render_clip,
    truth_path_for,
)
from simulation.score import interval_iou, score


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
    person = make_person(chip, k, np.random.default_rng(0))
    x0, y0 = round(HEAD_W * k / 2 - k / 2), round(HEAD_TOP * k - k / 2)
    alpha = person.alpha[y0 : y0 + k, x0 : x0 + k]
    drawn = person.premul[y0 : y0 + k, x0 : x0 + k]
    # the image's hair at its sides and top, which the oval cut away, is there untouched
    for y, x in ((8, 50), (50, 5), (50, 94), (12, 12)):
        assert alpha[y, x] == 255, (y, x)
        assert np.abs(drawn[y, x].astype(int) - chip[y, x]).max() <= 1, (y, x)
    assert np.abs(drawn[60, 50].astype(int) - chip[60, 50]).max() <= 1
    assert alpha[0, 0] < 128  # the corner is rounded off
    # hair seen above the image takes the colour of its top rows
    above = person.premul[y0 - 5, x0 + k // 2]
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
    from model.datasets import split_records
    from simulation.faces import held_out

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


# ------------------------------------------------------------------------------------- scoring

DAY = dt.date(2024, 5, 1)
T0 = dt.datetime(2024, 5, 1, 10, 0, 0)


def _write(out, table, camera, video_id, rows):
    publish(str(out), table, rows, DAY, camera, video_id)


def _video_row(video, video_id, analysis_id, n_visitors):
    return dict(
        video_id=video_id,
        analysis_id=analysis_id,
        video=video,
        camera="cam1",
        date=DAY,
        run_id="run1",
        start_time=T0,
        start_time_source="filename",
        size_bytes=1000,
        mtime=T0,
        fingerprint="f" + video_id,
        duration_s=60.0,
        fps=30.0,
        width=640,
        height=360,
        rotation=0,
        codec="h264",
        frames_decoded=1800,
        frames_analysed=300,
        faces_detected=100,
        tracks=n_visitors,
        visitors=n_visitors,
        visitors_dropped=0,
        status="ok",
        error=None,
        processing_s=3.0,
        processed_at=T0 + dt.timedelta(hours=14),
        model_version="m1",
        detector_version="d1",
    )


def _visitor_row(video, video_id, analysis_id, track_id, start, end, age, gender):
    return dict(
        video_id=video_id,
        analysis_id=analysis_id,
        video=video,
        camera="cam1",
        date=DAY,
        track_id=track_id,
        start_s=start,
        end_s=end,
        start_time=T0 + dt.timedelta(seconds=start),
        end_time=T0 + dt.timedelta(seconds=end),
        dwell_s=end - start,
        frames=int((end - start) * 5),
        age=age,
        age_std=3.0,
        age_band="25-34",
        gender=gender,
        gender_score=0.9 if gender == "female" else 0.1,
        face_px=120.0,
        quality=0.8,
    )


@pytest.fixture
def analysis(tmp_path):
    out = tmp_path / "output"
    video = "/data/videos/cam1/sim.mp4"
    tracks = [
        (1, 1.5, 9.5, 34.0, "female"),  # truth 1 (female 30): age +4
        (2, 6.0, 19.0, 38.0, "female"),  # truth 2 (male 40): wrong gender, age -2
        (3, 50.0, 55.0, 60.0, "male"),  # nobody
        (4, 12.0, 14.0, 45.0, "male"),  # overlaps truth 2, which track 2 matches better
    ]
    _write(out, "visitors", "cam1", "v1", [_visitor_row(video, "v1", "a2", *t) for t in tracks])
    _write(out, "videos", "cam1", "v1", [_video_row(video, "v1", "a2", len(tracks))])
    # another video, and an uncommitted analysis of this one: both must be ignored
    other = "/data/videos/cam1/other.mp4"
    _write(out, "visitors", "cam1", "v2", [_visitor_row(other, "v2", "b1", 1, 1, 9, 30.0, "male")])
    _write(out, "videos", "cam1", "v2", [_video_row(other, "v2", "b1", 1)])
    stale = out / "visitors" / f"date={DAY.isoformat()}" / "camera=cam1" / "v1-stale.parquet"
    rows = [_visitor_row(video, "v1", "a9", 9, 30.0, 40.0, 25.0, "female")]
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLES["visitors"]), stale)

    truth = {
        "version": 1,
        "clip": {"file": "sim.mp4", "width": 640, "height": 360, "fps": 30, "duration_s": 60},
        "visitors": [
            {"id": 1, "age": 30, "gender": "female", "enter_s": 1.0, "leave_s": 10.0},
            {"id": 2, "age": 40, "gender": "male", "enter_s": 5.0, "leave_s": 20.0},
            {"id": 3, "age": 25, "gender": "female", "enter_s": 30.0, "leave_s": 40.0},
        ],
    }
    truth_file = tmp_path / "sim.truth.json"
    truth_file.write_text(json.dumps(truth))
    return out, truth_file


def test_score_hand_made_analysis(analysis):
    out, truth_file = analysis
    r = score(truth_file, out)
    assert r.video == "/data/videos/cam1/sim.mp4"
    assert (r.true_visitors, r.predicted_visitors) == (3, 4)
    assert (r.count_error, r.abs_count_error) == (1, 1)
    assert (r.matched, r.unmatched_true, r.unmatched_predicted) == (2, 1, 2)
    assert [(p.truth_id, p.track_id) for p in r.pairs] == [(1, 1), (2, 2)]
    assert r.gender_accuracy == pytest.approx(0.5)
    assert r.age_mae == pytest.approx(3.0)
    assert r.age_bias == pytest.approx(1.0)
    assert r.mean_iou == pytest.approx((8 / 9 + 13 / 15) / 2, abs=1e-4)
    assert interval_iou((0, 1), (2, 3)) == 0.0


def test_score_cli(analysis, tmp_path, capsys):
    out, truth_file = analysis
    js = tmp_path / "score.json"
    assert (
        score_cli.main(["--truth", str(truth_file), "--output", str(out), "--json", str(js)]) == 0
    )
    assert "count error (pred - true)  +1" in capsys.readouterr().out
    data = json.loads(js.read_text())
    assert data["age_mae"] == pytest.approx(3.0) and data["matched"] == 2
    assert score_cli.main(["--truth", str(tmp_path / "nope.json"), "--output", str(out)]) == 2
    truth = json.loads(truth_file.read_text())
    truth["clip"]["file"] = "unknown.mp4"
    truth_file.write_text(json.dumps(truth))
    assert score_cli.main(["--truth", str(truth_file), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown.mp4 is not among the videos" in err and "Traceback" not in err


def test_score_pools_clips_and_compares_two_analyses(analysis, tmp_path, capsys):
    out, truth_file = analysis
    # a second clip in the same output: its one visitor (male 50) read as a male of 44
    video = "/data/videos/cam1/sim2.mp4"
    _write(out, "visitors", "cam1", "v3", [_visitor_row(video, "v3", "c1", 1, 2, 8, 44.0, "male")])
    _write(out, "videos", "cam1", "v3", [_video_row(video, "v3", "c1", 1)])
    truth2 = {
        "version": 1,
        "clip": {"file": "sim2.mp4", "width": 640, "height": 360, "fps": 30, "duration_s": 60},
        "visitors": [{"id": 1, "age": 50, "gender": "male", "enter_s": 2.0, "leave_s": 8.0}],
    }
    truth2_file = tmp_path / "sim2.truth.json"
    truth2_file.write_text(json.dumps(truth2))
    # the other analysis: sim.mp4's two matched visitors read 30 / female and 40 / male (both
    # exact), sim2.mp4's as a 50-year-old woman
    other = tmp_path / "other"
    sim = "/data/videos/cam1/sim.mp4"
    rows = [(1, 1.5, 9.5, 30.0, "female"), (2, 6.0, 19.0, 40.0, "male")]
    _write(other, "visitors", "cam1", "v1", [_visitor_row(sim, "v1", "o1", *r) for r in rows])
    _write(other, "videos", "cam1", "v1", [_video_row(sim, "v1", "o1", 2)])
    _write(
        other, "visitors", "cam1", "v3", [_visitor_row(video, "v3", "o2", 1, 2, 8, 50.0, "female")]
    )
    _write(other, "videos", "cam1", "v3", [_video_row(video, "v3", "o2", 1)])

    js = tmp_path / "both.json"
    argv = ["--truth", str(truth_file), str(truth2_file), "--output", str(out), "--json", str(js)]
    assert score_cli.main(argv + ["--against", str(other)]) == 0
    text = capsys.readouterr().out
    data = json.loads(js.read_text())
    # this analysis: 4 true, 5 predicted, 3 matched; gender right 1 + 1; errors 4, 2, 6
    assert (data["n_clips"], data["true_visitors"], data["predicted_visitors"]) == (2, 4, 5)
    assert (data["matched"], data["gender_right"]) == (3, 2)
    assert data["age_mae"] == pytest.approx(4.0) and data["age_bias"] == pytest.approx(-4 / 3)
    assert [c["clip"] for c in data["clips"]] == ["sim.mp4", "sim2.mp4"]
    assert "all 2 clips: visitors 4 true / 5 predicted, matched 3, gender 2/3" in text
    totals, paired = data["against"]["totals"], data["against"]["paired"]
    assert (totals["matched"], totals["gender_right"], totals["age_mae"]) == (3, 2, 0.0)
    # visitor by visitor: errors (4, 2, 6) against (0, 0, 0); gender (T, F, T) against (T, T, F)
    assert paired["n"] == 3 and paired["mae_diff"] == pytest.approx(4.0)
    assert (paired["gender_only_a"], paired["gender_only_b"]) == (1, 1)
    assert paired["mae_p"] == pytest.approx(2 / 8, abs=0.01)
    assert "sign-flip p = 0.2" in text and "exact McNemar p = 1.000" in text

    # the same clip twice, or another file of the same name, is refused
    assert score_cli.main(["--truth", str(truth_file), str(truth_file), "--output", str(out)]) == 2
    assert "sim.mp4 is given more than once" in capsys.readouterr().err
    moved = tmp_path / "moved"
    _write(moved, "visitors", "cam1", "v1", [_visitor_row(sim, "v9", "m1", *r) for r in rows])
    _write(moved, "videos", "cam1", "v1", [dict(_video_row(sim, "v9", "m1", 2), fingerprint="f2")])
    argv = ["--truth", str(truth_file), "--output", str(out), "--against", str(moved)]
    assert score_cli.main(argv) == 2
    assert "the two analyses read different files named sim.mp4" in capsys.readouterr().err


@pytest.mark.parametrize(
    "truth",
    [
        {"clip": {}, "visitors": []},
        {"clip": {"file": "sim.mp4"}, "visitors": [{"id": 1, "age": 30}]},
        {"clip": {"file": "sim.mp4"}, "visitors": "none"},
    ],
)
def test_score_refuses_a_malformed_truth_in_one_line(analysis, tmp_path, capsys, truth):
    out, _ = analysis
    bad = tmp_path / "bad.truth.json"
    bad.write_text(json.dumps(truth))
    assert score_cli.main(["--truth", str(bad), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.truth.json" in err
    assert err.startswith("error: ")  # the one format every job prints (jobs.cli.run)


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


def test_score_sets_photo_readings_beside_video(analysis, tmp_path, capsys):
    import onnxruntime as ort
    from onnx_models import write_tiny_model

    out, truth_file = analysis
    faces = tmp_path / "photos"
    faces.mkdir()
    colours = [(40, 90, 200), (200, 180, 20), (120, 120, 120)]  # BGR, one flat photo each
    lines = ["path,age,gender"]
    for i, c in enumerate(colours):
        cv2.imwrite(str(faces / f"f{i}.png"), np.full((48, 48, 3), c, np.uint8))
        lines.append(f"f{i}.png,30,0")
    (faces / "labels.csv").write_text("\n".join(lines) + "\n")
    truth = json.loads(truth_file.read_text())
    for i, v in enumerate(truth["visitors"]):
        v["face"] = f"f{i}.png"
    truth_file.write_text(json.dumps(truth))
    model = tmp_path / "tiny.onnx"
    write_tiny_model(model, size=16)

    # the tiny model pools the image, so a flat photo reads as its colour alone
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    expect = {}
    for i, c in enumerate(colours):
        x = np.empty((1, 3, 16, 16), np.float32)
        x[0] = ((np.array(c[::-1], np.float32) / 255 - 0.5) / 0.25)[:, None, None]
        age, prob = sess.run(["age", "gender_prob"], {"image": x})
        expect[i + 1] = (float(age[0]), float(prob[0]))

    js = tmp_path / "photos.json"
    argv = ["--truth", str(truth_file), "--output", str(out), "--json", str(js)]
    assert score_cli.main(argv + ["--photos", str(model), "--faces", str(faces)]) == 0
    text = capsys.readouterr().out
    photos = json.loads(js.read_text())["photos"]
    rows = {v["truth_id"]: v for v in photos["visitors"]}
    assert sorted(rows) == [1, 2]  # the matched visitors; truth 3 was missed on video
    for tid, (age, prob) in expect.items():
        if tid in rows:
            assert rows[tid]["photo_age"] == pytest.approx(age, abs=0.01)
            assert rows[tid]["photo_female"] == pytest.approx(prob, abs=0.001)
    truth_gender = {1: "female", 2: "male"}
    photo_right = [expect[t][1] > 0.5 if g == "female" else expect[t][1] <= 0.5
                   for t, g in truth_gender.items()]  # fmt: skip
    assert photos["paired"]["gender_right_b"] == sum(photo_right)
    assert photos["paired"]["gender_right_a"] == 1  # video: visitor 1 right, visitor 2 wrong
    # with these colours both photos read right, so visitor 2 (a man read as a woman on video)
    # is the one lost between photo and video
    assert photo_right == [True, True]
    assert "right on the photo, wrong on video:\n  sim.mp4 visitor 2: male 40" in text

    assert score_cli.main(argv + ["--photos", str(model)]) == 2
    assert "--photos needs --faces" in capsys.readouterr().err
    (faces / "f1.png").unlink()
    (faces / "labels.csv").write_text("path,age,gender\nf0.png,30,0\n")
    assert score_cli.main(argv + ["--photos", str(model), "--faces", str(faces)]) == 2
    assert "lacks the face f1.png" in capsys.readouterr().err
