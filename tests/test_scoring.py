"""Scoring an analysis against a synthetic clip's truth (simulation.scoring, jobs.dev.score),
on hand-made analysis tables."""

import datetime as dt
import json

import cv2
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onnx_models import write_tiny_model

from jobs.dev import score as score_cli
from schemas import TABLES
from schemas.publish import publish
from simulation.scoring import interval_iou, score

DAY = dt.date(2024, 5, 1)
T0 = dt.datetime(2024, 5, 1, 10, 0, 0)


def _write(out, table, camera, video_id, rows):
    publish(str(out), table, rows, DAY, camera, video_id)


def _video_row(video, video_id, analysis_id, n_visitors):
    return dict(
        video_id=video_id,
        analysis_id=analysis_id,
        video=video,
        run_id="run1",
        start_time=T0,
        start_time_source="filename",
        size_bytes=1000,
        mtime=T0.replace(tzinfo=dt.UTC),
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
        processed_at=T0.replace(tzinfo=dt.UTC) + dt.timedelta(hours=14),
        model_version="m1",
        detector_version="d1",
    )


def _visitor_row(video, video_id, analysis_id, track_id, start, end, age, gender):
    return dict(
        video_id=video_id,
        analysis_id=analysis_id,
        video=video,
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


def test_score_sets_photo_readings_beside_video(analysis, tmp_path, capsys):
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
