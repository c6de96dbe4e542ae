"""Landmark-geometry measures used as baselines (as OFIQ and drowsiness detectors use them)."""

from __future__ import annotations

import numpy as np

from kiosk.runtime.vision.types import Landmarks


def eye_aspect_ratio(eye: np.ndarray) -> float:
    """Soukupova & Cech's EAR of one eye's six points: lid distances over corner distance."""
    vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    return float(vertical / (2.0 * max(np.linalg.norm(eye[0] - eye[3]), 1e-6)))


def mouth_opening(landmarks: Landmarks) -> float:
    """Inner-lip gap (mean of three point pairs) over the eye-midpoint-to-chin distance."""
    p = landmarks.points
    gap = np.mean([np.linalg.norm(p[a] - p[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
    eye_mid = p[36:48].mean(axis=0)
    return float(gap / max(np.linalg.norm(p[8] - eye_mid), 1e-6))
