"""Mouth open: the mouth classifier on the mouth crop. Its landmark measure is OFIQ's mouth
opening, fused with the CNN score when the bundle says so."""

from __future__ import annotations

import numpy as np

from kiosk.contract.models import COMPLIANCE
from kiosk.runtime.checks.fusion import FusedClassifierCheck
from kiosk.runtime.vision.analysis import Analysis
from kiosk.runtime.vision.types import Landmarks

INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))


def mouth_opening(landmarks: Landmarks) -> float:
    """OFIQ's MouthClosed measure (ISO/IEC 29794-5): the widest inner-lip gap over the distance
    from the eye midpoint (mean of the 12 eye points) to the chin (point 8); scale-free."""
    p = landmarks.points
    gap = max(float(np.linalg.norm(p[a] - p[b])) for a, b in INNER_LIP_PAIRS)
    eye_mid = p[36:48].mean(axis=0)
    return gap / max(float(np.linalg.norm(p[8] - eye_mid)), 1e-6)


class MouthOpen(FusedClassifierCheck):
    spec = COMPLIANCE["mouth_open"]
    geometry = "mouth_opening"

    def cnn_score(self, analysis: Analysis) -> float:
        return self.classifier.score(analysis.regions.mouth)

    def measure(self, analysis: Analysis) -> float:
        return mouth_opening(analysis.landmarks)
