"""Face detection: the registry, detector versions, and MTCNN and YuNet on real UTKFace chips
(the shared pieces: test_faces_base.py; the graph rewrites: test_faces_graphs.py)."""

import hashlib
import pickle

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
from conftest import UTKFACE, YUNET_FILE, load_utkface_chips
from onnx import TensorProto, helper

from pipelines.faces import (
    DETECTORS,
    Face,
    FaceDetector,
    MtcnnDetector,
    YunetDetector,
    create_detector,
    detector_version,
    known_detectors,
    mtcnn_model_dir,
)
from pipelines.faces.yunet import OUTPUTS

N_CHIPS = 12


@pytest.fixture(scope="module")
def chips():
    if not UTKFACE.is_file():
        pytest.skip(f"UTKFace dev archive not found at {UTKFACE}")
    return load_utkface_chips(N_CHIPS)


@pytest.fixture(scope="module")
def chip_detector():
    return MtcnnDetector(min_face_px=20)


@pytest.fixture(scope="module")
def frame_detector():
    return MtcnnDetector(min_face_px=40, max_side=640)


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ---------------------------------------------------------------- interface and registry


def test_face_size_and_protocol(chip_detector):
    face = Face(box=(10.0, 20.0, 50.0, 110.0), score=0.9, landmarks=np.zeros((5, 2), np.float32))
    assert face.width == 40 and face.height == 90
    assert face.size == pytest.approx(60.0)  # sqrt(40 * 90)
    assert isinstance(chip_detector, FaceDetector)
    assert chip_detector.version == "mtcnn-onnx-0.0.1"


def test_registry():
    assert known_detectors() == ["mtcnn", "yunet"]
    assert {"mtcnn": MtcnnDetector, "yunet": YunetDetector} == DETECTORS
    detector = create_detector("MTCNN", min_face_px=30, max_side=320)
    assert isinstance(detector, MtcnnDetector)
    assert detector.min_face_px == 30 and detector.max_side == 320
    with pytest.raises(ValueError, match="mtcnn"):
        create_detector("scrfd")


def test_pickles_with_its_options():
    detector = pickle.loads(pickle.dumps(MtcnnDetector(min_face_px=33, max_side=480)))
    assert detector.min_face_px == 33 and detector.max_side == 480
    assert detector.detect(np.zeros((100, 100, 3), np.uint8)) == []


def test_bad_model_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        MtcnnDetector(model_dir=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="pnet.onnx"):
        MtcnnDetector(model_dir=tmp_path)
    for name in ("pnet", "rnet", "onet"):
        (tmp_path / f"{name}.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load"):
        MtcnnDetector(model_dir=tmp_path)
    with pytest.raises(ValueError):
        MtcnnDetector(min_face_px=8)


# ---------------------------------------------------------------- versions without a session


def yunet_shaped_file(path) -> bytes:
    """A valid ONNX file with YuNet 2023mar's output names (each an Identity of the input), so
    the version's reading is tested without the real weights; returns its bytes."""
    nodes = [helper.make_node("Identity", ["input"], [name]) for name in OUTPUTS]
    value = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in OUTPUTS]
    graph = helper.make_graph(nodes, "yunet_shaped", [value], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.save(model, path)
    return path.read_bytes()


@pytest.fixture
def no_sessions(monkeypatch):
    """detector_version must not build ONNX Runtime sessions: building one fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("an ONNX Runtime session was built")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)


def test_detector_version_of_mtcnn_is_its_constant(no_sessions):
    assert detector_version("mtcnn") == "mtcnn-onnx-0.0.1" == MtcnnDetector.version
    assert detector_version("MTCNN", None) == "mtcnn-onnx-0.0.1"
    with pytest.raises(ValueError, match="takes no model file"):
        detector_version("mtcnn", "/somewhere/pnet.onnx")
    with pytest.raises(ValueError, match="unknown face detector 'scrfd'"):
        detector_version("scrfd")


def test_detector_version_of_yunet_names_the_file_by_its_hash(tmp_path, monkeypatch):
    data = yunet_shaped_file(tmp_path / "other.onnx")
    expected = "yunet-sha256-" + hashlib.sha256(data).hexdigest()[:12]
    with monkeypatch.context() as patched:
        patched.setattr(onnxruntime, "InferenceSession", None)  # calling it would fail
        assert detector_version("yunet", tmp_path / "other.onnx") == expected
    assert YunetDetector(tmp_path / "other.onnx").version == expected  # the same as built


def test_detector_version_errors_as_the_detector(tmp_path, no_sessions):
    assert detector_version("yunet") == "yunet-2023mar"  # the shipped file
    missing = tmp_path / "missing.onnx"
    with pytest.raises(FileNotFoundError, match=f"face detector model file not found: {missing}$"):
        detector_version("yunet", missing)
    with pytest.raises(ValueError, match=r"onet.onnx is not YuNet 2023mar \(outputs \['dense_5'"):
        detector_version("yunet", mtcnn_model_dir() / "onet.onnx")  # valid ONNX, another network
    (tmp_path / "text.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load face detector model .*text.onnx"):
        detector_version("yunet", tmp_path / "text.onnx")


def test_detector_version_of_the_real_yunet_file(no_sessions):
    assert detector_version("YuNet", YUNET_FILE) == "yunet-2023mar"
    assert detector_version("yunet", str(YUNET_FILE)) == "yunet-2023mar"


def test_bad_input_and_tiny_images(chip_detector):
    with pytest.raises(ValueError):
        chip_detector.detect(np.zeros((50, 50), np.uint8))
    assert chip_detector.detect(np.zeros((8, 300, 3), np.uint8)) == []


# ---------------------------------------------------------------- real faces


def test_one_face_per_chip_with_plausible_landmarks(chips, chip_detector):
    for chip in chips:
        faces = chip_detector.detect(chip)
        assert len(faces) == 1
        face = faces[0]
        assert face.score > 0.9
        assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
        (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = face.landmarks
        assert lex < nx < rex and lmx < rmx  # left/right as seen in the image
        assert max(ley, rey) < ny < min(lmy, rmy)  # eyes above nose above mouth
        assert 40 < rex - lex < 140  # UTKFace chips: inter-ocular distance about 80 px
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < lex and rex < x2 <= 200 and 0 <= y1 < ley and max(lmy, rmy) < y2 <= 200
        assert 100 < face.size <= 200


def test_nothing_on_blank_or_noise(frame_detector):
    assert frame_detector.detect(np.zeros((1080, 1920, 3), np.uint8)) == []
    assert frame_detector.detect(np.full((1080, 1920, 3), 128, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    assert frame_detector.detect(noise) == []


@pytest.mark.parametrize("side,x,y", [(120, 1500, 100), (64, 200, 900)])
def test_small_chip_in_1080p_frame_found_in_place(chips, chip_detector, frame_detector, side, x, y):
    """A chip pasted small into a blank 1080p frame is found there, with its landmarks, despite
    the 640-px detection downscale (results come back in full-resolution pixels)."""
    chip = chips[0]
    ref = chip_detector.detect(chip)[0]
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[y : y + side, x : x + side] = cv2.resize(chip, (side, side), interpolation=cv2.INTER_AREA)
    faces = frame_detector.detect(frame)
    assert len(faces) == 1
    s = side / 200
    expected = (x + ref.box[0] * s, y + ref.box[1] * s, x + ref.box[2] * s, y + ref.box[3] * s)
    assert iou(faces[0].box, expected) > 0.7
    expected_landmarks = (ref.landmarks + 0.5) * s - 0.5 + np.array([x, y])
    err = np.linalg.norm(faces[0].landmarks - expected_landmarks, axis=1).mean()
    assert err < 0.06 * (ref.landmarks[1, 0] - ref.landmarks[0, 0]) * s  # < 6% of eye distance


def check_several_faces_sorted_by_score(chips, chip_detector, frame_detector):
    """Three chips pasted into a 1080p frame: three faces, best first, where the chips were."""
    frame = np.zeros((1080, 1920, 3), np.uint8)
    expected = []
    for k, chip in enumerate(chips[:3]):
        frame[300:500, 200 + 500 * k : 400 + 500 * k] = chip
        x1, y1, x2, y2 = chip_detector.detect(chip)[0].box
        expected.append((x1 + 200 + 500 * k, y1 + 300, x2 + 200 + 500 * k, y2 + 300))
    faces = frame_detector.detect(frame)
    assert len(faces) == 3
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)
    for box in expected:
        assert max(iou(f.box, box) for f in faces) > 0.7


def test_several_faces_sorted_by_score(chips, chip_detector, frame_detector):
    check_several_faces_sorted_by_score(chips, chip_detector, frame_detector)


# ---------------------------------------------------------------- YuNet on the real 2023mar file


@pytest.fixture(scope="module")
def yunet_chip_detector():
    return YunetDetector(YUNET_FILE)


def test_yunet_user_errors(tmp_path):
    assert "yunet" in known_detectors()
    assert create_detector("yunet").version == "yunet-2023mar"  # the shipped file
    with pytest.raises(FileNotFoundError, match="not found"):
        create_detector("yunet", model=tmp_path / "missing.onnx")
    (tmp_path / "text.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load"):
        YunetDetector(tmp_path / "text.onnx")
    with pytest.raises(ValueError, match="not YuNet 2023mar"):
        YunetDetector(mtcnn_model_dir() / "onet.onnx")  # a valid ONNX file, another network
    with pytest.raises(ValueError, match="min_score"):
        YunetDetector(mtcnn_model_dir() / "onet.onnx", min_score=1.5)


def test_yunet_from_config_and_pickled(chips):
    config = {"name": "yunet", "model": str(YUNET_FILE), "min_face_px": 30, "max_side": 480}
    detector = create_detector(config.pop("name"), **config, min_score=0.7)
    assert isinstance(detector, YunetDetector) and isinstance(detector, FaceDetector)
    assert detector.version == "yunet-2023mar"  # the file's SHA-256 is OpenCV Zoo's
    assert (detector.min_face_px, detector.max_side, detector.min_score) == (30, 480, 0.7)
    copy = pickle.loads(pickle.dumps(detector))
    assert (copy.model, copy.min_face_px, copy.max_side, copy.min_score) == (
        str(YUNET_FILE),
        30,
        480,
        0.7,
    )
    a, b = detector.detect(chips[0]), copy.detect(chips[0])
    assert len(a) == len(b) == 1 and a[0].box == b[0].box
    np.testing.assert_array_equal(a[0].landmarks, b[0].landmarks)
    assert copy.detect(np.zeros((100, 100, 3), np.uint8)) == []


def test_yunet_with_onet_landmarks_places_faces_as_mtcnn_does(chips, chip_detector):
    """landmarks="onet": YuNet finds the face, MTCNN's O-Net places its box and landmarks, so
    they land where MTCNN's own detection puts them (the points of the face model's template),
    YuNet's score is kept, results carry a version of their own, and faces can be refreshed."""
    own = YunetDetector(YUNET_FILE, max_side=None)
    placed = YunetDetector(YUNET_FILE, max_side=None, landmarks="onet")
    assert placed.version == "yunet-2023mar+onet" and own.version == "yunet-2023mar"
    assert hasattr(placed, "refresh") and not hasattr(own, "refresh")
    own_errors, placed_errors = [], []
    for chip in chips:
        ref = chip_detector.detect(chip)[0]
        image = cv2.copyMakeBorder(chip, 50, 50, 50, 50, cv2.BORDER_REPLICATE)
        (a,), (b,) = own.detect(image), placed.detect(image)
        assert b.score == a.score
        eye_distance = ref.landmarks[1, 0] - ref.landmarks[0, 0]
        for face, errors in ((a, own_errors), (b, placed_errors)):
            errors.append(np.linalg.norm(face.landmarks - 50 - ref.landmarks, axis=1).mean())
            errors[-1] /= eye_distance
        (followed,) = placed.refresh(image, [b])
        assert followed.score == b.score  # YuNet's score, not O-Net's
    assert np.mean(placed_errors) < 0.03 < np.mean(own_errors)
    with pytest.raises(ValueError, match="landmarks must be one of onet, yunet"):
        YunetDetector(YUNET_FILE, landmarks="dlib")


def test_yunet_one_face_per_chip_in_order_and_close_to_mtcnn(chips, chip_detector):
    """Each chip, given 50 px of replicated border (context, as a face has in a frame), gives one
    face whose landmarks are in our as-seen order and near MTCNN's: 6.7% of the eye distance on
    average, 11.4% at worst, over these 12 chips."""
    detector = YunetDetector(YUNET_FILE, max_side=None)
    errors = []
    for chip in chips:
        ref = chip_detector.detect(chip)[0]
        faces = detector.detect(cv2.copyMakeBorder(chip, 50, 50, 50, 50, cv2.BORDER_REPLICATE))
        assert len(faces) == 1
        face = faces[0]
        assert 0.9 < face.score <= 1
        assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
        landmarks = face.landmarks - 50
        (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = landmarks
        assert lex < nx < rex and lmx < rmx  # left/right as seen in the image
        assert max(ley, rey) < ny < min(lmy, rmy)  # eyes above nose above mouth
        x1, y1, x2, y2 = np.array(face.box) - 50
        assert x1 < lex and rex < x2 and y1 < min(ley, rey) and max(lmy, rmy) < y2
        assert 150 < face.size < 260  # MTCNN: 175-192 px; YuNet's box reaches further down
        eye_distance = ref.landmarks[1, 0] - ref.landmarks[0, 0]
        errors.append(np.linalg.norm(landmarks - ref.landmarks, axis=1).mean() / eye_distance)
    assert np.mean(errors) < 0.08 and np.max(errors) < 0.13


def test_yunet_nothing_on_blank_or_noise():
    detector = YunetDetector(YUNET_FILE, min_score=0.3)  # below the default 0.6: still nothing
    assert detector.detect(np.zeros((1080, 1920, 3), np.uint8)) == []
    assert detector.detect(np.full((1080, 1920, 3), 128, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    assert detector.detect(np.zeros((6, 300, 3), np.uint8)) == []
    with pytest.raises(ValueError):
        detector.detect(np.zeros((50, 50), np.uint8))


@pytest.mark.parametrize("side,x,y,max_side", [(120, 1500, 100, 640), (64, 200, 900, 1280)])
def test_yunet_small_chip_in_1080p_frame_found_in_place(
    chips, chip_detector, yunet_chip_detector, side, x, y, max_side
):
    """A chip pasted small into a blank 1080p frame is found there; results come back in
    full-resolution pixels. The face is about 40 px in the image the net sees (120 px at
    max_side 640, 64 px at 1280), where YuNet's landmarks are coarse: within 20% of the eye
    distance of MTCNN's on the full chip (15% and 10% here; MTCNN itself: under 6%)."""
    chip = chips[0]
    ref, own = chip_detector.detect(chip)[0], yunet_chip_detector.detect(chip)[0]
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[y : y + side, x : x + side] = cv2.resize(chip, (side, side), interpolation=cv2.INTER_AREA)
    faces = YunetDetector(YUNET_FILE, max_side=max_side).detect(frame)
    assert len(faces) == 1 and faces[0].score > 0.8
    s = side / 200
    expected = (x + own.box[0] * s, y + own.box[1] * s, x + own.box[2] * s, y + own.box[3] * s)
    assert iou(faces[0].box, expected) > 0.7
    expected_landmarks = (ref.landmarks + 0.5) * s - 0.5 + np.array([x, y])
    err = np.linalg.norm(faces[0].landmarks - expected_landmarks, axis=1).mean()
    assert err < 0.2 * (ref.landmarks[1, 0] - ref.landmarks[0, 0]) * s


def test_yunet_reach_is_set_by_max_side(chips):
    """YuNet needs a face of about 30 px in the image it sees: a 48 px face in a 1080p frame is
    16 px at max_side 640 and is missed, and found at full resolution."""
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[500:548, 900:948] = cv2.resize(chips[0], (48, 48), interpolation=cv2.INTER_AREA)
    assert YunetDetector(YUNET_FILE, max_side=640).detect(frame) == []
    faces = YunetDetector(YUNET_FILE, max_side=None).detect(frame)
    assert len(faces) == 1 and iou(faces[0].box, (900, 500, 948, 548)) > 0.6
    assert YunetDetector(YUNET_FILE, max_side=None, min_face_px=60).detect(frame) == []


def test_yunet_several_faces_sorted_by_score(chips, yunet_chip_detector):
    check_several_faces_sorted_by_score(chips, yunet_chip_detector, yunet_chip_detector)


def test_refresh_follows_faces_that_moved_and_gives_up_on_lost_ones(chips, frame_detector):
    """O-Net alone on the last boxes follows two faces that moved by a tenth of their size to
    where a detection in the new frame finds them; a face gone, or two boxes on one face, give
    None (the cadence then detects)."""

    def frame_with(shift):
        frame = np.zeros((1080, 1920, 3), np.uint8)
        for k, chip in enumerate(chips[:2]):
            x = 300 + 700 * k + shift
            frame[300:500, x : x + 200] = chip
        return frame

    before = frame_detector.detect(frame_with(0))
    assert len(before) == 2
    after = frame_detector.refresh(frame_with(20), before)
    assert after is not None and len(after) == 2
    for face in frame_detector.detect(frame_with(20)):
        match = max(after, key=lambda f: iou(f.box, face.box))
        assert iou(match.box, face.box) > 0.8
        assert np.linalg.norm(match.landmarks - face.landmarks, axis=1).mean() < 0.05 * face.width
    assert frame_detector.refresh(np.zeros((1080, 1920, 3), np.uint8), before) is None
    assert frame_detector.refresh(frame_with(20), [before[0], before[0]]) is None


def test_evaluation_yunet_enlarges_small_crops_and_maps_faces_back(chips, chip_detector):
    """model.alignment.chip_detector("yunet"): a 46 px crop is enlarged to 320 px for YuNet;
    the face comes back in the crop's pixels, its landmarks near MTCNN's on the full chip."""
    from model.alignment import chip_detector as evaluation_detector

    detector = evaluation_detector("yunet", min_score=0.5)
    assert detector.version == "yunet-2023mar+onet"
    side, pad = 30, 8
    small = cv2.resize(chips[0], (side, side), interpolation=cv2.INTER_AREA)
    padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    (face,) = detector.detect(padded)
    ref = chip_detector.detect(chips[0])[0]
    s = side / 200
    expected = (ref.landmarks + 0.5) * s - 0.5 + pad
    eye_distance = (ref.landmarks[1, 0] - ref.landmarks[0, 0]) * s
    assert np.linalg.norm(face.landmarks - expected, axis=1).mean() < 0.15 * eye_distance
    assert face.box[0] < face.landmarks[0, 0] and face.box[2] <= side + 2 * pad
