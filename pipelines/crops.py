"""Stage 4, faces → crops: warp a detected face onto the model's crop template.

Coordinates everywhere use OpenCV's pixel-centre convention: the centre of pixel (column i, row j)
is the point (i, j). ``pipelines.faces`` returns landmarks in that convention and
``cv2.warpAffine`` maps pixel centres, so a template point (x, y) is exactly output pixel (x, y).

Landmark order (five points, left/right as seen in the image): left eye, right eye, nose, left
mouth corner, right mouth corner - the order of ``schemas.model_file.ModelSpec.crop_template``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.faces import Face

__all__ = [
    "Sighting",
    "similarity_transform",
    "transform_points",
    "align_face",
    "align_faces",
    "frontalness",
]


@dataclass(frozen=True)
class Sighting:
    """A face seen in one analysed frame: the key its crop travels with through the model, and
    what the tracker and the tables need of it afterwards."""

    video_id: str
    frame_index: int
    t_s: float  # seconds from the start of the video stream
    face: Face
    frontalness: float  # 0-1, from the landmarks (``frontalness``)
    # Head pose in degrees (``pipelines.pose.head_pose``), for attention; None: no pose.
    yaw: float | None = None
    pitch: float | None = None
    # The face's appearance group in its video (``pipelines.identity``), -1 if not embedded.
    group: int = -1


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation; no reflection)
    mapping ``src`` points onto ``dst`` points (Umeyama 1991). Returns a (2, 3) float64 matrix M
    with dst ~ M[:, :2] @ src + M[:, 2]."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need two matching sets of >= 2 points, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc**2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("source points are degenerate (all equal)")
    cov = dc.T @ sc / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # forbid reflections
    rot = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / var_s)
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    template: np.ndarray,
    size: int,
    border: int = cv2.BORDER_REPLICATE,
) -> np.ndarray:
    """Warp the face with ``landmarks`` (5x2, image pixels) so they land on ``template`` (5x2,
    pixels of the ``size`` x ``size`` output), with the least-squares similarity transform.

    Resampling is bilinear (``cv2.INTER_LINEAR``). Where the face is shrunk by more than 2x, the
    region around it is first reduced with ``cv2.INTER_AREA`` to the output scale so the crop is
    not aliased (a 300-px face warped to 112 px looks like a properly downscaled image). Pixels
    outside the frame are filled by ``border``: default ``cv2.BORDER_REPLICATE`` (edge pixels
    repeated), which avoids hard black edges that a model never saw in training; pass
    ``cv2.BORDER_CONSTANT`` for black. Returns a (size, size, C) array of the image's dtype.
    """
    matrix = similarity_transform(landmarks, template)
    return _warp(image, matrix, int(size), border)


def align_faces(
    image: np.ndarray,
    landmark_sets: list[np.ndarray] | np.ndarray,
    template: np.ndarray,
    size: int,
    border: int = cv2.BORDER_REPLICATE,
) -> np.ndarray:
    """``align_face`` for several faces of one image; returns (N, size, size, C)."""
    crops = [align_face(image, lm, template, size, border) for lm in landmark_sets]
    if not crops:
        return np.empty((0, size, size) + image.shape[2:], dtype=image.dtype)
    return np.stack(crops)


def _warp(image: np.ndarray, matrix: np.ndarray, size: int, border: int) -> np.ndarray:
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= 0.5:
        return cv2.warpAffine(
            image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border
        )
    # Heavy downscale: cut the source region the output covers (plus a margin), reduce it with
    # INTER_AREA to about the output scale, then warp what is left (rotation, small scale).
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[-1, -1], [size, -1], [-1, size], [size, size]], dtype=np.float64)
    region = transform_points(inverse, corners)
    h, w = image.shape[:2]
    x1, y1 = np.floor(region.min(axis=0)).astype(int) - 2
    x2, y2 = np.ceil(region.max(axis=0)).astype(int) + 3
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 2 or y2 - y1 < 2:  # face entirely outside the image: plain warp
        return cv2.warpAffine(
            image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border
        )
    patch = image[y1:y2, x1:x2]
    new_w = max(2, round((x2 - x1) * scale))
    new_h = max(2, round((y2 - y1) * scale))
    small = cv2.resize(patch, (new_w, new_h), interpolation=cv2.INTER_AREA)
    rx, ry = new_w / (x2 - x1), new_h / (y2 - y1)
    # small pixel-centre coords: x_s = (x - x1 + 0.5) * rx - 0.5; invert and compose with matrix.
    to_image = np.array(
        [[1 / rx, 0, x1 + 0.5 / rx - 0.5], [0, 1 / ry, y1 + 0.5 / ry - 0.5], [0, 0, 1]]
    )
    composed = matrix @ to_image
    out = cv2.warpAffine(small, composed, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
    if out.ndim == 2 and image.ndim == 3:
        out = out[:, :, None]
    return out


def frontalness(landmarks: np.ndarray) -> float:
    """How frontal a face looks, from its five landmarks: 1 for frontal and upright, towards 0
    for strong yaw (head turned), roll (head tilted) or degenerate landmarks.

    In the frame rotated so the eyes are level: yaw = |nose x - midline x| / (half the
    inter-ocular distance), where the midline is half-way between the eye centre and the mouth
    centre (the nose lies on it on a frontal face, and reaches an eye's x near profile); pitch
    from where the nose sits between the eye line and the mouth line (about mid-way when
    frontal). Score = (1 - yaw) * cos(roll) * pitch term, clipped to [0, 1]. Meant as a quality
    weight, not an angle estimate.
    """
    p = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    le, re, nose, lm, rm = p
    eye_vec = re - le
    iod = float(np.hypot(*eye_vec))
    if iod < 1e-6:
        return 0.0
    roll = float(np.arctan2(eye_vec[1], eye_vec[0]))
    c, s = np.cos(-roll), np.sin(-roll)
    rot = np.array([[c, -s], [s, c]])
    q = (p - (le + re) / 2) @ rot.T  # eyes level, eye centre at the origin
    eye_c = np.zeros(2)
    mouth_c = (q[3] + q[4]) / 2
    if mouth_c[1] <= 1e-6:  # mouth not below the eyes: upside down or garbage
        return 0.0
    mid_x = (eye_c[0] + mouth_c[0]) / 2
    yaw = abs(q[2, 0] - mid_x) / (iod / 2)
    # nose height between eye line (0) and mouth line (1); about 0.4-0.7 when frontal
    t = q[2, 1] / mouth_c[1]
    pitch = max(0.0, abs(t - 0.55) - 0.2) / 0.35
    score = (1.0 - yaw) * max(np.cos(roll), 0.0) * (1.0 - pitch)
    return float(np.clip(score, 0.0, 1.0))
