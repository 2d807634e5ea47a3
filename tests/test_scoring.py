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
from schemas.model_file import CLASS_NAMES
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
        frames_skipped=0,
        frames_analysed=300,
        faces_detected=100,
        tracks=n_visitors,
        visitors=n_visitors,
        visitors_dropped=0,
        watchers=n_visitors,
        passers_by=0,
        status="ok",
        error=None,
        processing_s=3.0,
        processed_at=T0.replace(tzinfo=dt.UTC) + dt.timedelta(hours=14),
        model_version="m1",
        detector_version="d1",
    )


def _visitor_row(
    video, video_id, analysis_id, track_id, start, end, age, gender, mask=None, emotion=None
):
    row = dict(
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
    # the mask and emotion columns, where the visitors schema has them (null: not read)
    scores = {e: float(e == emotion) for e in CLASS_NAMES["emotion"]} if emotion else None
    happy = float(emotion == "happy") if emotion else None
    read = dict(mask=mask, mask_score=0.9 if mask else None, emotion=emotion,
                emotion_scores=scores, happy_share=happy)  # fmt: skip
    read |= {"attention_s": None, "watcher": None, "fragments": None, "person_id": None}
    row.update({k: v for k, v in read.items() if k in TABLES["visitors"].names})
    return row


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


# Visitors drawn from a mask set and an emotion set have those labels and no age or gender.
MIXED_TRUTH = {
    "version": 1,
    "clip": {"file": "mixed.mp4", "width": 640, "height": 360, "fps": 30, "duration_s": 60},
    "visitors": [
        {"id": 1, "age": 30, "gender": "female", "enter_s": 1.0, "leave_s": 10.0},
        {"id": 2, "age": None, "gender": None, "mask": "with_mask", "enter_s": 12.0,
         "leave_s": 20.0},
        {"id": 3, "age": None, "gender": None, "emotion": "happy", "enter_s": 22.0,
         "leave_s": 30.0},
        {"id": 4, "age": None, "gender": None, "mask": "without_mask", "enter_s": 32.0,
         "leave_s": 40.0},
        {"id": 5, "age": None, "gender": None, "emotion": "sad", "enter_s": 42.0,
         "leave_s": 50.0},
        {"id": 6, "age": None, "gender": None, "mask": "with_incorrect_mask", "enter_s": 52.0,
         "leave_s": 58.0},  # missed by every analysis below
    ],
}  # fmt: skip
SPANS = [(1.5, 9.5), (12.0, 20.0), (22.0, 30.0), (32.0, 40.0), (42.0, 50.0)]  # truth 1-5
READ_COLUMNS = ("mask", "mask_score", "emotion", "emotion_scores", "happy_share")
needs_read_columns = pytest.mark.skipif(
    "mask" not in TABLES["visitors"].names,
    reason="the visitors schema has no mask and emotion columns yet (schemas.tables)",
)


def _mixed_analysis(tmp_path, name, readings):
    """An output folder whose analysis of mixed.mp4 found truth 1-5, each read as
    ``readings[i]``: (age, gender, mask, emotion)."""
    out = tmp_path / name
    video = "/data/videos/cam1/mixed.mp4"
    rows = [
        _visitor_row(video, "v5", name, i + 1, *SPANS[i], *reading)
        for i, reading in enumerate(readings)
    ]
    _write(out, "visitors", "cam1", "v5", rows)
    _write(out, "videos", "cam1", "v5", [_video_row(video, "v5", name, len(rows))])
    truth_file = tmp_path / "mixed.truth.json"
    truth_file.write_text(json.dumps(MIXED_TRUTH))
    return out, truth_file


# truth 1 has no mask or emotion label, truth 2 no emotion, truth 3 no mask: those readings of
# theirs are not scored
READ_A = [
    (34.0, "female", "without_mask", "happy"),
    (40.0, "male", "with_mask", "neutral"),  # mask right
    (25.0, "female", "without_mask", "happy"),  # emotion right
    (50.0, "male", "with_mask", "happy"),  # mask wrong
    (33.0, "female", "without_mask", "fear"),  # emotion wrong
]
READ_B = [
    (30.0, "female", "with_mask", "sad"),
    (40.0, "male", "with_mask", "sad"),  # mask right
    (25.0, "female", "with_mask", "sad"),  # emotion wrong
    (50.0, "male", "without_mask", "sad"),  # mask right
    (33.0, "female", "with_mask", "sad"),  # emotion right
]


@needs_read_columns
def test_score_mask_and_emotion_of_the_labelled_visitors(tmp_path, capsys):
    out, truth_file = _mixed_analysis(tmp_path, "a", READ_A)
    r = score(truth_file, out)
    assert (r.true_visitors, r.matched, r.unmatched_true) == (6, 5, 1)
    assert r.labelled == ["mask", "emotion"] and r.notes == []
    assert (r.mask_accuracy, r.mask_n) == (0.5, 2)
    assert (r.emotion_accuracy, r.emotion_n) == (0.5, 2)
    # age and gender only over truth 1, the one visitor with those labels
    assert (r.gender_accuracy, r.gender_n, r.age_mae, r.age_n) == (1.0, 1, 4.0, 1)
    assert [(p.true_mask, p.pred_mask) for p in r.pairs][:2] == [
        (None, "without_mask"),
        ("with_mask", "with_mask"),
    ]
    text = r.table()
    assert "mask accuracy              0.500 (1/2)" in text
    assert "emotion accuracy           0.500 (1/2)" in text
    assert "     2      2   1.00         - / 40.0        - / male  with_mask / with_mask" in text

    other, _ = _mixed_analysis(tmp_path, "b", READ_B)
    js = tmp_path / "both.json"
    argv = ["--truth", str(truth_file), "--output", str(out), "--json", str(js)]
    assert score_cli.main([*argv, "--against", str(other)]) == 0
    text = capsys.readouterr().out
    data = json.loads(js.read_text())
    assert (data["mask_right"], data["mask_n"], data["emotion_right"], data["emotion_n"]) == (
        1, 2, 1, 2,
    )  # fmt: skip
    paired = data["against"]["paired"]
    # mask: truth 2 right with both, truth 4 with b only; emotion: 3 with a only, 5 with b only
    assert paired["mask"] == {"n": 2, "right_a": 1, "right_b": 2, "only_a": 0, "only_b": 1,
                              "p": 1.0}  # fmt: skip
    assert paired["emotion"] == {"n": 2, "right_a": 1, "right_b": 1, "only_a": 1, "only_b": 1,
                                 "p": 1.0}  # fmt: skip
    assert paired["n"] == 1 and paired["mae_diff"] == pytest.approx(4.0)  # truth 1 alone
    assert "mask 2/2 (1.000), emotion 1/2 (0.500)" in text
    assert (
        f"  mask right     1 against 2 of 2: right only with {out} 0, only with {other} 1" in text
    )
    assert "paired comparison over 1 visitors with an age and gender" in text


def test_score_an_analysis_without_mask_and_emotion_columns(tmp_path, capsys, monkeypatch):
    # an analysis written before the pipeline had the columns (or by a tree without them)
    old = pa.schema([f for f in TABLES["visitors"] if f.name not in READ_COLUMNS])
    monkeypatch.setitem(TABLES, "visitors", old)
    out, truth_file = _mixed_analysis(tmp_path, "old", READ_A)
    r = score(truth_file, out)
    assert (r.mask_accuracy, r.mask_n, r.emotion_accuracy, r.emotion_n) == (None, 0, None, 0)
    assert r.notes == [
        "no mask predictions in the analysis",
        "no emotion predictions in the analysis",
    ]
    assert (r.matched, r.gender_accuracy, r.age_mae) == (5, 1.0, 4.0)  # the rest still scored
    assert score_cli.main(["--truth", str(truth_file), "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mask accuracy              - (no mask predictions in the analysis)" in text
    assert "emotion accuracy           - (no emotion predictions in the analysis)" in text


@needs_read_columns
def test_score_an_analysis_by_a_model_without_the_heads(tmp_path, capsys):
    # the columns are there, null: the model had no mask or emotion head
    no_heads = [(age, gender, None, None) for age, gender, _, _ in READ_A]
    out, truth_file = _mixed_analysis(tmp_path, "plain", no_heads)
    r = score(truth_file, out)
    assert r.notes == [
        "no mask predictions in the analysis",
        "no emotion predictions in the analysis",
    ]
    assert (r.mask_n, r.emotion_n, r.matched) == (0, 0, 5)
    new, _ = _mixed_analysis(tmp_path, "new", READ_A)
    js = tmp_path / "pair.json"
    argv = ["--truth", str(truth_file), "--output", str(new), "--against", str(out)]
    assert score_cli.main([*argv, "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "  mask: no labelled visitor read by both analyses" in text
    assert f"against {out}: visitors 6 true / 5 predicted, matched 5, gender 1/1 (1.000)" in text
    assert "no mask predictions in the analysis, no emotion predictions in the analysis" in text
    data = json.loads(js.read_text())
    assert data["against"]["totals"]["notes"] == r.notes and data["notes"] == []
    assert data["against"]["paired"]["mask"]["n"] == 0


def test_score_refuses_an_unknown_class_in_the_truth(analysis, tmp_path, capsys):
    out, truth_file = analysis
    truth = json.loads(truth_file.read_text())
    truth["visitors"][0]["mask"] = "scarf"
    truth_file.write_text(json.dumps(truth))
    assert score_cli.main(["--truth", str(truth_file), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "visitor 1 has mask 'scarf', not one of with_mask" in err and err.count("\n") == 1


def test_score_reads_only_photos_with_an_age_and_gender(tmp_path):
    # the mask and emotion visitors' faces are not in the UTKFace-like source: never looked up
    out, truth_file = _mixed_analysis(tmp_path, "a", READ_A)
    truth = json.loads(truth_file.read_text())
    for v in truth["visitors"]:
        v["face"] = "f0.png" if v["id"] == 1 else f"masks/with_mask/x{v['id']}.jpg"
    truth_file.write_text(json.dumps(truth))
    faces = tmp_path / "photos"
    faces.mkdir()
    cv2.imwrite(str(faces / "f0.png"), np.full((48, 48, 3), (40, 90, 200), np.uint8))
    (faces / "labels.csv").write_text("path,age,gender\nf0.png,30,1\n")
    model = tmp_path / "tiny.onnx"
    write_tiny_model(model, size=16)
    js = tmp_path / "photos.json"
    argv = ["--truth", str(truth_file), "--output", str(out), "--json", str(js)]
    assert score_cli.main([*argv, "--photos", str(model), "--faces", str(faces)]) == 0
    photos = json.loads(js.read_text())["photos"]
    assert [v["truth_id"] for v in photos["visitors"]] == [1] and photos["paired"]["n"] == 1
    assert photos["visitors"][0]["true_gender"] == "female"
