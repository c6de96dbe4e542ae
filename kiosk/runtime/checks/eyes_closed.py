"""Eyes closed: the eye classifier on both eye crops. The higher score counts, so one closed eye
is enough to reject (the paper scores per face the same way). Its landmark measure is the smaller
eye aspect ratio of the two eyes, fused with the CNN score when the bundle says so; the other
eye's score (`lower_eye_cnn_score`) is a fusion input too: two closed-looking eyes are stronger
evidence than one poor crop."""

from __future__ import annotations

import numpy as np

from kiosk.contract.models import COMPLIANCE
from kiosk.runtime.checks.fusion import FusedClassifierCheck
from kiosk.runtime.vision.analysis import Analysis


def eye_aspect_ratio(eye: np.ndarray) -> float:
    """Soukupova & Cech's EAR of one eye's six points: lid distances over corner distance."""
    vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    return float(vertical / (2.0 * max(float(np.linalg.norm(eye[0] - eye[3])), 1e-6)))


class EyesClosed(FusedClassifierCheck):
    spec = COMPLIANCE["eyes_closed"]
    geometry = "eye_aspect_ratio"
    extra_features = ("lower_eye_cnn_score",)

    def features(self, analysis: Analysis) -> dict[str, float]:
        """Both eye crops scored once: the higher is `cnn_score`, the other a fusion input."""
        regions = analysis.regions
        right, left = (self.classifier.score(r) for r in (regions.right_eye, regions.left_eye))
        return {
            "cnn_score": max(right, left),
            self.geometry: self.measure(analysis),
            "lower_eye_cnn_score": min(right, left),
        }

    def measure(self, analysis: Analysis) -> float:
        """The more closed eye's aspect ratio (low = closed)."""
        landmarks = analysis.landmarks
        return min(
            eye_aspect_ratio(landmarks.group("right_eye")),
            eye_aspect_ratio(landmarks.group("left_eye")),
        )
