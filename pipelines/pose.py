"""Stage 4, faces → head pose: which way a head points, in degrees, from its five landmarks.

The pose is the rotation that best carries a generic 3D five-point face (``FACE_MM``) onto the
detector's landmarks through a pinhole camera: ``cv2.solvePnP`` with SQPnP, the global
least-squares optimum (about 50 µs a face). The camera is the frame's own size with an assumed
horizontal field of view (``attention.camera_hfov_deg``) and its centre as principal point.

Angles are those of the face's forward direction relative to the line of sight from the camera
to the head: (0, 0) is facing the camera wherever the face is in the frame, so a visitor at the
edge of a wide view who looks at the kiosk reads as facing it (read against the optical axis
instead, they would seem turned by their angle off it). ``yaw`` > 0: turned towards the image's
right (the person's own left); ``pitch`` > 0: tilted up. Roll, a head tilted sideways, is left
out: it does not turn a face away from the camera.

Not ``pipelines.crops.frontalness``: that is a 0-1 quality weight for the model's answers (it
also falls with roll and with garbled landmarks, and has no unit); this is an angle, for
attention (``pipelines.visitors``). Head pose only: where the eyes look within the head is not
seen.

Accuracy (tests/test_pose.py), on 1,000 synthetic projections of faces that differ from the
model by 4 % of the eye distance per coordinate, with 3 % landmark noise, anywhere in a 1080p
frame: yaw error mean 3.6 degrees (95 % under 8.9, worst 15.8), pitch 3.1 (7.8, 17.1). A
geometric estimate on the same faces (``frontalness``'s construction: the nose's offset from
the eye-mouth midline and its height between them, turned into angles through the model's nose
depth) erred 6.1 and 8.1 degrees on average, up to 41, so the fit is used.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["FACE_MM", "camera_matrix", "head_pose", "pose_angles"]

# A generic adult face, millimetres, in the order of ``pipelines.faces.LANDMARK_NAMES``: eye
# centres, nose tip, mouth corners. Axes as OpenCV's camera: x to the image's right, y down, z
# away from the camera (the nose nearest), origin at the five points' centroid. From MediaPipe's
# canonical face model (mediapipe/modules/face_geometry/data/canonical_face_model.obj,
# Apache-2.0; centimetres, y up, z towards the viewer): each eye centre is the midpoint of its
# corners (vertices 33 and 133, 263 and 362), the nose tip the midpoint of vertices 1 and 4, the
# mouth corners vertices 61 and 291. Its eye distance, 63 mm, is the mean adult interpupillary
# distance; seen frontally its proportions match the ArcFace five-point crop template, which is
# averaged from annotated photos like the detectors' (mouth width 0.78 against 0.83 of the eye
# distance, eyes to mouth 1.11 against 1.15, nose 0.49 of the way from eyes to mouth in both).
FACE_MM = np.array(
    [
        [-31.5, -34.7, 11.4],
        [31.5, -34.7, 11.4],
        [0.0, -0.5, -29.3],
        [-24.6, 35.0, 3.2],
        [24.6, 35.0, 3.2],
    ]
)


def camera_matrix(width: float, height: float, hfov_deg: float) -> np.ndarray:
    """A pinhole camera for a ``width`` x ``height`` frame with a horizontal field of view of
    ``hfov_deg``; principal point at the frame's centre (pixel-centre convention)."""
    f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


def head_pose(
    landmarks: np.ndarray, frame_size: tuple[int, int], hfov_deg: float
) -> tuple[float, float] | None:
    """(yaw, pitch) in degrees of the face with ``landmarks`` (5x2, frame pixels) in a frame of
    ``frame_size`` (width, height) seen with ``hfov_deg``; None where the landmarks allow no
    pose (not finite, collapsed to a point, or a solution behind the camera)."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    if not np.isfinite(points).all() or np.ptp(points, axis=0).max() < 1.0:
        return None
    camera = camera_matrix(frame_size[0], frame_size[1], hfov_deg)
    try:
        ok, rvec, tvec = cv2.solvePnP(FACE_MM, points, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:  # SQPnP refuses points too close together for its normalisation
        return None
    if not ok or tvec[2, 0] <= 0:
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    return pose_angles(rotation, tvec.ravel())


def pose_angles(rotation: np.ndarray, position: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees of a head with ``rotation`` (3x3, head to camera axes) at
    ``position`` (camera axes), relative to the line of sight from the camera to it."""
    sight = np.asarray(position, dtype=np.float64) / np.linalg.norm(position)
    forward = _towards_sight(sight).T @ rotation @ np.array([0.0, 0.0, -1.0])
    yaw = math.degrees(math.atan2(forward[0], -forward[2]))
    pitch = math.degrees(math.atan2(-forward[1], math.hypot(forward[0], forward[2])))
    return yaw, pitch


def _towards_sight(sight: np.ndarray) -> np.ndarray:
    """The smallest rotation taking the optical axis (0, 0, 1) to ``sight`` (a unit vector):
    the camera's axes turned to look straight at the head, its "up" kept as near as can be."""
    axis = np.cross([0.0, 0.0, 1.0], sight)
    norm = float(np.linalg.norm(axis))
    if norm < 1e-12:
        return np.eye(3)
    angle = math.atan2(norm, float(sight[2]))
    rotation, _ = cv2.Rodrigues(axis / norm * angle)
    return rotation
