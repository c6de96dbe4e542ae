"""Eyes closed: the eye classifier on both eye crops. The higher score counts, so one closed eye
is enough to reject (the paper scores per face the same way)."""

from __future__ import annotations

from kiosk.contract.models import COMPLIANCE
from kiosk.runtime.checks.base import ClassifierCheck
from kiosk.runtime.vision.analysis import Analysis


class EyesClosed(ClassifierCheck):
    spec = COMPLIANCE["eyes_closed"]

    def score(self, analysis: Analysis) -> float:
        regions = analysis.regions
        return max(
            self.classifier.score(regions.right_eye), self.classifier.score(regions.left_eye)
        )
