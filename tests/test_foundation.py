"""The install itself: the analysis path needs no torch, ONNX Runtime runs a model we build."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from videos import write_clip

from pipelines.predictions import open_session, predict, read_spec

REPO = Path(__file__).resolve().parents[1]
NO_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "


def test_analysis_runs_without_torch(tiny_model, tmp_path):
    write_clip(tmp_path / "v" / "cam" / "20261122_120000.mp4", seconds=1, fps=10)
    code = (
        NO_TORCH + "import pipelines, schemas, jobs, model, reports.views; "
        "from jobs import analyze, report, nightly, score, simulate, evaluate; "
        "sys.exit(analyze.main(sys.argv[1:]))"
    )
    args = [
        "--input",
        str(tmp_path / "v"),
        "--output",
        str(tmp_path / "out"),
        "--model",
        str(tiny_model),
        "--workers",
        "1",
        "--no-progress",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"videos_ok": 1' in proc.stdout


def test_onnx_runtime_runs_a_model_built_here(tiny_model):
    session = open_session(str(tiny_model))
    spec = read_spec(session, str(tiny_model))
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    out = predict(session, spec, crops)
    assert len(out) == 5
    for p in out:
        assert p.age_probs.shape == (101,) and abs(float(p.age_probs.sum()) - 1) < 1e-5
        # the in-graph expected age equals the expectation of the softmax of the age head
        assert abs(p.age - float(p.age_probs @ np.arange(101))) < 1e-3
        assert 0.0 <= p.gender_prob <= 1.0
    assert len({round(p.age, 4) for p in out}) == 5  # different inputs, different answers
