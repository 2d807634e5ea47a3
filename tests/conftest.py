from pathlib import Path

import pytest
from onnx_models import write_tiny_model

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "model" / "weights" / "age_gender.onnx"


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
