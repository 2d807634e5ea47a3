"""Identity: the dlib network reader, the shipped embedding file, verification metrics on pairs,
appearance groups, person ids and the stitching of track fragments."""

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, needs_shared_data

from model.verification import (
    equal_error_rate,
    fold_accuracy,
    parse_pairs,
    tar_at_far,
    verification_metrics,
)
from pipelines.crops import Sighting
from pipelines.embeddings import FaceEmbedder
from pipelines.faces.base import Face
from pipelines.identity import NO_GROUP, AppearanceGroups, PersonRegistry
from pipelines.predictions import FacePrediction, ModelFileError
from pipelines.stitching import stitch_tracks, track_group, track_groups
from pipelines.tracks import Observation, Track

EMBEDDING_FILE = Path(__file__).resolve().parents[1] / "model" / "weights" / "face_embedding.onnx"


# --- dlib's serialisation -------------------------------------------------------------------


def _int(v: int) -> bytes:
    """dlib's integer encoding (the reader's inverse)."""
    mag = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(mag) | (0x80 if v < 0 else 0)]) + mag


def _name(s: str) -> bytes:
    return _int(len(s)) + s.encode()


def _tensor(values: np.ndarray) -> bytes:
    return _int(2) + _int(values.size) + _int(1) * 3 + values.astype("<f4").tobytes()


def test_dlib_integers_decode_as_dlib_writes_them():
    pytest.importorskip("torch")  # the reader lives beside the PyTorch network
    from model.face_embedding import _read_int

    for v in (0, 1, 5, 255, 256, 70000, -5, -300):
        assert _read_int(_int(v), 0) == (v, len(_int(v)))
    assert _int(0) == b"\x01\x00" and _int(-5) == b"\x81\x05"


def test_a_dlib_file_is_read_into_the_network_layer_by_layer(tmp_path):
    """A file written in dlib's layout (input first) from a random network reads back exactly:
    convolution weights then biases, affine gamma then beta, the linear layer's (in, out)
    matrix transposed."""
    torch = pytest.importorskip("torch")
    from model.face_embedding import DlibFaceNet, load_dlib_face_net

    torch.manual_seed(0)
    src = DlibFaceNet()
    for p in src.parameters():
        p.data.normal_()
    convs = [src.stem] + [c for b in src.blocks for c in (b.conv1, b.conv2)]
    affines = [src.stem_aff] + [a for b in src.blocks for a in (b.aff1, b.aff2)]
    data = b"\x01\x01" + _name("loss_metric_2")
    for i, conv in enumerate(convs):
        w = conv.weight.detach().numpy()
        params = np.concatenate([w.ravel(), conv.bias.detach().numpy()])
        data += _name("con_4") + _tensor(params)
        data += _int(w.shape[0]) + _int(w.shape[2]) + _int(w.shape[3]) + _int(1) * 4
        aff = affines[i]
        gb = np.concatenate([aff.gamma.detach().numpy(), aff.beta.detach().numpy()])
        data += _name("affine_") + _tensor(gb) + _name("relu_")
    fc = src.fc.weight.detach().numpy()  # (out, in)
    data += _name("fc_2") + _int(128) + _int(256) + _tensor(fc.T.copy())
    path = tmp_path / "net.dat"
    path.write_bytes(data)
    got = load_dlib_face_net(path)
    for (name, a), b in zip(src.state_dict().items(), got.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_file_that_is_not_dlibs_network_is_refused(tmp_path):
    pytest.importorskip("torch")
    from model.face_embedding import load_dlib_face_net

    path = tmp_path / "other.dat"
    path.write_bytes(_name("con_4") + _tensor(np.zeros(10)) + _int(1) * 7)
    with pytest.raises(ValueError, match="not dlib's face-recognition ResNet"):
        load_dlib_face_net(path)


# --- the shipped embedding file --------------------------------------------------------------


def test_the_shipped_embedding_file_says_what_it_is_and_gives_unit_vectors():
    embedder = FaceEmbedder(str(EMBEDDING_FILE))
    spec = embedder.spec
    assert spec.input_size == 150 and "CC0" in spec.license
    assert float(spec.extra["gflops"]) < 0.6
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (3, 150, 150, 3), dtype=np.uint8)
    e = embedder.embed(crops)
    assert e.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # A little noise does not move a face; another image does.
    noisy = np.clip(crops.astype(int) + rng.integers(-3, 4, crops.shape), 0, 255).astype(np.uint8)
    again = embedder.embed(noisy)
    assert (e * again).sum(axis=1).min() > 0.99


def test_the_age_and_gender_model_is_not_taken_for_an_embedding_model(tiny_model):
    with pytest.raises(ModelFileError, match="not a face-embedding model"):
        FaceEmbedder(str(tiny_model))


# --- verification metrics -------------------------------------------------------------------


def test_pairs_files_parse_into_folds_of_same_and_different_pairs():
    text = "2 1\nAnn 1 2\nAnn 1 Bob 3\nCy 2 4\nDee 1 Ed 1\n"
    pairs = parse_pairs(text, "lfw")
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)]
    assert pairs[1].a == "lfw/Ann/Ann_0001.jpg" and pairs[1].b == "lfw/Bob/Bob_0003.jpg"


def test_eer_tar_and_fold_accuracy_on_known_scores():
    same = np.array([True] * 4 + [False] * 4)
    separated = np.array([0.9, 0.8, 0.85, 0.95, 0.1, 0.2, 0.3, 0.4])
    assert equal_error_rate(separated, same)[0] == 0.0
    assert tar_at_far(separated, same, 0.0)["tar"] == 1.0
    # One impostor above two genuine pairs: at FAR 0 only the genuine pairs above it pass.
    mixed = np.array([0.9, 0.8, 0.5, 0.45, 0.1, 0.2, 0.3, 0.85])
    t = tar_at_far(mixed, same, 0.0)
    assert t["far"] == 0.0 and t["tar"] == 0.25
    eer, _ = equal_error_rate(mixed, same)
    assert eer == 0.25
    folds = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    assert fold_accuracy(separated, same, folds)["mean"] == 1.0
    m = verification_metrics(mixed, same, folds)
    assert m["pairs"] == 8 and 0 <= m["accuracy"]["mean"] <= 1


@needs_shared_data("lfw-dev.tar.gz")
def test_lfw_pairs_through_the_pipelines_detection_and_alignment(tmp_path):
    """jobs.evaluate on 100 pairs of the first fold (50 same, 50 different) as two folds. On all
    3,000 dev pairs: EER 1.40 %, TAR 97.7 % at FAR 0.07 %, accuracy 98.67 ± 0.41 %."""
    from jobs import evaluate

    root = tmp_path / "lfw"
    with tarfile.open(SHARED_DATA / "lfw-dev.tar.gz") as tar:
        text = tar.extractfile("lfw/pairs-dev.txt").read().decode()
        lines = text.splitlines()
        n = int(lines[0].split()[1])
        same, different = lines[1:51], lines[1 + n : 51 + n]
        chosen = same[:25] + different[:25] + same[25:] + different[25:]
        root.mkdir()
        (root / "pairs-dev.txt").write_text("2 25\n" + "\n".join(chosen) + "\n")
        for pair in parse_pairs((root / "pairs-dev.txt").read_text(), "lfw"):
            for name in (pair.a, pair.b):
                target = tmp_path / name
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(name).read())
    out = tmp_path / "m.json"
    argv = ["--model", str(EMBEDDING_FILE), "--data", str(root), "--json", str(out)]
    assert evaluate.main(argv) == 0
    m = json.loads(out.read_text())["identity"]
    assert m["pairs"] == 100
    assert m["eer"] <= 0.05 and m["accuracy"]["mean"] >= 0.95, m


# --- groups, person ids, stitching ----------------------------------------------------------


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def test_faces_fall_into_one_group_per_person():
    rng = np.random.default_rng(1)
    people = [_unit(rng.normal(size=128)) for _ in range(3)]
    groups = AppearanceGroups(same_person=0.9)
    seen = []
    for k in range(30):
        person = k % 3
        seen.append((person, groups.assign(_unit(people[person] + 0.02 * rng.normal(size=128)))))
    assert len(groups) == 3
    assert len({g for p, g in seen if p == 0}) == 1
    assert len({g for _, g in seen}) == 3


def test_person_ids_are_random_shared_across_videos_of_a_day_and_distinct_within_a_video():
    import datetime as dt

    rng = np.random.default_rng(2)
    a, b = _unit(rng.normal(size=128)), _unit(rng.normal(size=128))
    registry = PersonRegistry()
    day = dt.date(2026, 12, 4)
    first = AppearanceGroups(0.9)
    first.assign(a)
    first.assign(b)
    ids_1 = registry.person_ids(day, first, 0.9)
    second = AppearanceGroups(0.9)
    second.assign(_unit(b + 0.01 * rng.normal(size=128)))
    ids_2 = registry.person_ids(day, second, 0.9)
    assert ids_1[0] != ids_1[1]
    assert ids_2[0] == ids_1[1]
    other_day = registry.person_ids(day + dt.timedelta(days=1), second, 0.9)
    assert other_day[0] != ids_1[1]
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids_1.values())


def _track(track_id: int, start: float, end: float, group: int) -> Track:
    track = Track(track_id)
    pred = FacePrediction(age=30.0, age_probs=np.zeros(101, np.float32), gender_prob=0.5, extra={})
    for t in np.arange(start, end + 1e-9, 0.2):
        face = Face((100.0, 100.0, 200.0, 200.0), 0.99, np.zeros((5, 2), np.float32))
        sighting = Sighting("v", int(t * 5), float(t), face, 0.9, group=group)
        track.observations.append(Observation(sighting, pred))
    return track


def test_fragments_of_one_group_within_the_window_become_one_track():
    tracks = [_track(1, 0, 5, 0), _track(2, 8, 12, 0), _track(3, 6, 9, 1), _track(4, 50, 55, 0)]
    out = stitch_tracks(tracks, window_s=30)
    assert [t.track_id for t in out] == [1, 3, 4]
    assert out[0].fragments == 2 and out[0].last.t_s == pytest.approx(12)
    assert out[2].fragments == 1  # 38 s after the last piece ended: a new visit


def test_overlapping_or_unembedded_tracks_are_never_stitched():
    overlapping = stitch_tracks([_track(1, 0, 5, 0), _track(2, 4, 9, 0)], window_s=30)
    assert len(overlapping) == 2
    unknown = stitch_tracks([_track(1, 0, 5, NO_GROUP), _track(2, 7, 9, NO_GROUP)], window_s=30)
    assert len(unknown) == 2 and track_group(unknown[0]) == NO_GROUP


def test_a_tracks_group_is_the_one_most_of_its_faces_fell_into():
    track = _track(1, 0, 2, 3)
    for obs in track.observations[:3]:
        object.__setattr__(obs.sighting, "group", 7)
    assert track_group(track) == 3 and track_groups(track) == {3, 7}


def test_a_fragment_sharing_any_group_with_an_earlier_track_continues_it():
    """One person's faces split over groups 0 and 2; the fragment's majority (2) is not the
    earlier track's (0), but a face of it fell into 0, and the tracker vouches for the rest."""
    earlier = _track(1, 0, 5, 0)
    fragment = _track(2, 8, 12, 2)
    object.__setattr__(fragment.observations[0].sighting, "group", 0)
    stranger = _track(3, 20, 24, 1)
    out = stitch_tracks([earlier, fragment, stranger], window_s=30)
    assert [t.track_id for t in out] == [1, 3] and out[0].fragments == 2
    assert track_group(out[0]) == 0  # the visitor's person id: the merged track's majority


# --- privacy: embeddings stay in memory ------------------------------------------------------


def _vector_patterns(embeddings: list[np.ndarray]) -> tuple[set[bytes], set[str]]:
    """What a leaked embedding would look like: the bytes of four consecutive values as
    float32, float16 or float64, and three values printed as numpy, a list or JSON print them."""
    raw, text = set(), set()
    for e in np.concatenate(embeddings):
        head = e[:4].astype(np.float64)
        for dtype in ("<f4", "<f2", "<f8", ">f4"):
            raw.add(head.astype(dtype).tobytes())
        text.add(np.array2string(e[:3].astype(np.float32))[1:-1].strip())
        text.add(", ".join(repr(float(v)) for v in e[:3].astype(np.float32)))
        text.add(", ".join(f"{v:.4f}" for v in e[:3]))
    return raw, text


def test_no_embedding_reaches_the_tables_the_logs_or_temporary_files(
    tiny_model, tmp_path, monkeypatch, capfd, caplog
):
    """A run with identity enabled (cross-video person ids and stitching), debug logging on:
    every embedding the run computes is recorded, then the output folder, the temporary folder
    and everything logged or printed are searched for any of them, as bytes or as text."""
    import tempfile

    from jobs import analyze
    from schemas.views import connect

    made: list[np.ndarray] = []
    embed = FaceEmbedder.embed

    def recording(self, crops, batch=64):
        out = embed(self, crops, batch)
        made.append(out.copy())
        return out

    monkeypatch.setattr(FaceEmbedder, "embed", recording)
    centroid = AppearanceGroups.centroid

    def recording_centroid(self, group):  # the groups' mean embeddings must not leak either
        out = centroid(self, group)
        made.append(out[None].astype(np.float32))
        return out

    monkeypatch.setattr(AppearanceGroups, "centroid", recording_centroid)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    site = tmp_path / "site.yaml"
    site.write_text("identity:\n  enabled: true\n  min_frontalness: 0.0\n  min_face_px: 20\n")
    demo = Path(__file__).resolve().parents[1] / "demo" / "kiosk_20240501_100000.mp4"
    out = tmp_path / "out"
    argv = ["--input", str(demo), "--output", str(out), "--model", str(tiny_model)]
    argv += ["--config", str(site), "--workers", "1", "--no-progress", "-v"]
    assert analyze.main(argv) == 0
    assert made and sum(len(e) for e in made) >= 3, "the run embedded no face"
    persons = connect(str(out)).execute("SELECT person_id FROM visitors").fetchall()
    assert persons and all(p is not None and len(p) == 16 for (p,) in persons)

    raw, text = _vector_patterns(made)
    printed = capfd.readouterr()
    logged = printed.out + printed.err + caplog.text
    assert caplog.records, "nothing was logged"
    for pattern in text:
        assert pattern not in logged, f"an embedding was logged: {pattern}"
    files = [p for root in (out, tmp) for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    for path in files:
        data = path.read_bytes()
        for pattern in raw:
            assert pattern not in data, f"{path} holds an embedding's bytes"
        decoded = data.decode("latin-1")
        for pattern in text:
            assert pattern not in decoded, f"{path} holds an embedding as text"


def test_one_person_in_two_videos_of_a_day_gets_one_person_id(tiny_model, tmp_path):
    """identity.enabled across videos: the demo clip under two names, one day, one camera:
    the same face, so one person id for both visits; with identity off, no person id."""
    from jobs import analyze
    from jobs.cli import run as run_cli
    from schemas.views import connect

    demo = Path(__file__).resolve().parents[1] / "demo" / "kiosk_20240501_100000.mp4"
    videos = tmp_path / "videos" / "lobby"
    videos.mkdir(parents=True)
    for name in ("kiosk_20240501_100000.mp4", "kiosk_20240501_110000.mp4"):
        (videos / name).write_bytes(demo.read_bytes())
    site = tmp_path / "site.yaml"
    site.write_text("identity:\n  enabled: true\n  min_frontalness: 0.0\n  min_face_px: 20\n")
    argv = ["--input", str(videos), "--model", str(tiny_model), "--workers", "1", "--no-progress"]
    assert analyze.main([*argv, "--output", str(tmp_path / "on"), "--config", str(site)]) == 0
    rows = connect(str(tmp_path / "on")).execute("SELECT person_id FROM visitors").fetchall()
    assert len(rows) == 2 and rows[0][0] is not None and rows[0] == rows[1]
    assert analyze.main([*argv, "--output", str(tmp_path / "off")]) == 0
    rows = connect(str(tmp_path / "off")).execute("SELECT person_id FROM visitors").fetchall()
    assert len(rows) == 2 and rows == [(None,), (None,)]
    refused = [*argv, "--output", str(tmp_path / "x"), "--config", str(site), "--workers", "2"]
    assert run_cli(analyze.main, refused) == 2  # one line: one process must hold the day's people


def test_two_faces_of_one_frame_never_share_a_group():
    rng = np.random.default_rng(3)
    face = _unit(rng.normal(size=128))
    twin = _unit(face + 0.01 * rng.normal(size=128))  # a look-alike beside them
    groups = AppearanceGroups(same_person=0.9)
    first = groups.assign(face)
    assert groups.assign(twin) == first  # seen alone, the look-alike joins the group
    assert groups.assign(twin, taken={first}) != first  # beside the first face it cannot


def test_the_faces_of_a_frame_are_embedded_together_once_per_cadence():
    """``identity.sample_every_s``: all usable faces of the sampled frame, then none until the
    next sample is due."""
    import dataclasses

    from pipelines.identity import VideoIdentity
    from pipelines.settings import load_settings

    settings = dataclasses.replace(
        load_settings().identity, sample_every_s=1.0, min_frontalness=0.0, min_face_px=0
    )
    identity = VideoIdentity(FaceEmbedder(str(EMBEDDING_FILE)), settings)
    image = np.random.default_rng(5).integers(0, 255, (240, 320, 3), np.uint8)
    eyes = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], np.float32)
    one = [Face((20.0, 20.0, 100.0, 110.0), 0.99, eyes)]
    two = one + [Face((180.0, 20.0, 260.0, 110.0), 0.99, eyes + [160, 0])]

    def sampled(t_s, faces):
        return [g != NO_GROUP for g in identity.groups(image, t_s, faces, [1.0] * len(faces))]

    assert sampled(0.0, one) == [True]
    assert sampled(0.6, one) == [False] and sampled(1.0, one) == [True]
    assert sampled(1.6, two) == [False, False]  # the next sample is due at 2.0
    assert sampled(2.0, two) == [True, True] and sampled(2.5, two) == [False, False]
    assert identity.embedded == 4
