"""The install itself: the analysis path needs no torch, ONNX Runtime runs a model we build."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from videos import write_clip

from pipelines.predictions import open_session, predict, read_spec

REPO = Path(__file__).resolve().parents[1]
NO_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "


def test_analysis_runs_without_torch(tiny_model, tmp_path):
    write_clip(tmp_path / "v" / "cam" / "20261122_120000.mp4", seconds=1, fps=10)
    code = (
        NO_TORCH + "import pipelines, schemas, jobs, model, schemas.views; "
        "from jobs import analyze, report, nightly, evaluate; "
        "from jobs.dev import score, simulate; "
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


def test_a_plain_install_carries_the_defaults_model_and_reports(tmp_path):
    """``pip install .`` (not editable) copies packages only: the defaults, the shipped model
    and the report SQL must travel with the code, and the settings must load from there."""
    if importlib.util.find_spec("setuptools.command.bdist_wheel") is None:
        pytest.skip("building a wheel here needs setuptools >= 70.1 (torch's extra brings it)")
    source, wheels, site = tmp_path / "source", tmp_path / "wheels", tmp_path / "site"
    copy_checkout(source)  # a build in the checkout could reuse a stale build/ folder
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("*.whl"))
    install = pip + ["install", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    for packaged in (
        "config/analyze.yaml",
        "config/train.yaml",
        "model/weights/age_gender.onnx",
        "reports/sql/_macros.sql",
    ):
        assert (site / packaged).is_file(), packaged
    code = (
        "import pipelines.settings as s, schemas.views, common.messages; "
        "assert s.DEFAULTS_FILE.is_file(), s.DEFAULTS_FILE; "
        "print(s.DEFAULTS_FILE, s.load_settings(None).model)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # not the repository: the installed copy must be the one imported
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(str(site / "config" / "analyze.yaml"))


def copy_checkout(dest: Path) -> None:
    """The files a clean clone would have (tracked, or new and not ignored) copied to ``dest``."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout of the project")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
