import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx_models import write_tiny_model

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
UTKFACE = SHARED_DATA / "UTKFace-dev.tar.gz"
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "model" / "weights" / "age_gender.onnx"


# The shipped YuNet 2023mar file (pipelines/faces/weights/, MIT).
YUNET_FILE = (
    Path(__file__).resolve().parents[1]
    / "pipelines"
    / "faces"
    / "weights"
    / ("face_detection_yunet_2023mar.onnx")
)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    write_tiny_model(path, size=32)
    return path


def needs_shared_data(*names: str):
    missing = [n for n in names if not (SHARED_DATA / n).exists()]
    return pytest.mark.skipif(
        bool(missing), reason=f"development data absent: {', '.join(missing)} in {SHARED_DATA}"
    )


def load_utkface_chips(n: int) -> list[np.ndarray]:
    """The first ``n`` chips of the UTKFace archive as RGB arrays, read straight from the tar."""
    chips = []
    with tarfile.open(UTKFACE) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                data = np.frombuffer(tar.extractfile(member).read(), np.uint8)
                chips.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
                if len(chips) == n:
                    break
    return chips
