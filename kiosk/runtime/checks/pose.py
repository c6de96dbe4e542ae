"""Head pose: yaw, pitch and roll from the 68 landmarks, against ISO/IEC 19794-5's frontal pose
(+-5 deg yaw and pitch, +-8 deg roll).

The pose is `cv2.solvePnP` (SQPnP) of 14 landmarks on a generic 3D face: the anthropometric model
of Martins and Batista (ISR Coimbra, "glAnthropometric3DModel"), as used by the widely copied
dlib head-pose estimators (e.g. lincolnhard/head-pose-estimation). The camera is a pinhole with the
focal length of the frame's longer side and no distortion: yaw and pitch hardly depend on it at a
kiosk's distance. Signs, as the frame shows the face: roll > 0 the head turned clockwise; yaw
and pitch change sign in a mirror and upside down respectively (tests/test_icao_checks.py).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from kiosk.contract.reasons import HEAD_PITCHED, HEAD_TILTED, HEAD_TURNED
from kiosk.runtime.checks.base import CheckResult, MeasureCheck
from kiosk.runtime.vision.analysis import Analysis

# iBUG indices: brow ends, eye corners, nostril wings, mouth corners, lower lip centre, chin.
POSE_LANDMARKS = [17, 21, 22, 26, 36, 39, 42, 45, 31, 35, 48, 54, 57, 8]
# The model's x points to the image's left, y up and z out of the face; negated into the camera's
# axes (x right, y down, z away). The model is left/right symmetric, so the mirror is harmless.
FACE_MODEL = -np.array(
    [
        [6.825897, 6.760612, 4.402142],
        [1.330353, 7.122144, 6.903745],
        [-1.330353, 7.122144, 6.903745],
        [-6.825897, 6.760612, 4.402142],
        [5.311432, 5.485328, 3.987654],
        [1.789930, 5.393625, 4.413414],
        [-1.789930, 5.393625, 4.413414],
        [-5.311432, 5.485328, 3.987654],
        [2.005628, 1.409845, 6.165652],
        [-2.005628, 1.409845, 6.165652],
        [2.774015, -2.080775, 5.048531],
        [-2.774015, -2.080775, 5.048531],
        [0.000000, -3.116408, 6.097667],
        [0.000000, -7.415691, 4.070434],
    ],
    np.float64,
)


def head_pose(analysis: Analysis) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees; (0, 0, 0) is a face looking straight into the camera."""
    height, width = analysis.gray.shape[:2]
    focal = float(max(height, width))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], np.float64)
    image_points = analysis.landmarks.points[POSE_LANDMARKS].astype(np.float64)
    ok, rvec, _ = cv2.solvePnP(FACE_MODEL, image_points, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise ValueError("solvePnP found no head pose for these landmarks")
    r = cv2.Rodrigues(rvec)[0]
    yaw = math.degrees(math.atan2(-r[2, 0], math.hypot(r[2, 1], r[2, 2])))
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll


class HeadPose(MeasureCheck):
    """One check for the three axes, `details` has all three. The first axis outside its
    tolerance, in the order roll, yaw, pitch, gives `value`, `limit` and `reason`; with none
    outside, the one nearest its tolerance. Roll comes first because it is read most surely (the
    eye line) and the 68-point landmarks drift on a rolled face, which shows as false pitch;
    pitch comes last because a generic 3D face measures it least surely (docs/compliance.md)."""

    name = "head_pose"
    reason = HEAD_TURNED
    bound = "abs_max"
    limit_key = "max_yaw_deg"

    def measure(self, analysis: Analysis) -> CheckResult:
        yaw, pitch, roll = head_pose(analysis)
        axes = [
            (roll, self.limits.max_roll_deg, HEAD_TILTED),
            (yaw, self.limits.max_yaw_deg, HEAD_TURNED),
            (pitch, self.limits.max_pitch_deg, HEAD_PITCHED),
        ]
        outside = [axis for axis in axes if abs(axis[0]) > axis[1]]
        angle, limit, reason = (
            outside[0] if outside else max(axes, key=lambda axis: abs(axis[0]) / axis[1])
        )
        details = {"yaw_deg": yaw, "pitch_deg": pitch, "roll_deg": roll}
        return CheckResult.measured(angle, limit, "abs_max", reason, details)
