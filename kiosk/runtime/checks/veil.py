"""Face covered (veil, mask, scarf): the veil classifier on the whole-face crop."""

from __future__ import annotations

from kiosk.contract.models import COMPLIANCE
from kiosk.runtime.checks.base import ClassifierCheck
from kiosk.runtime.vision.analysis import Analysis


class Veil(ClassifierCheck):
    spec = COMPLIANCE["veil"]

    def score(self, analysis: Analysis) -> float:
        return self.classifier.score(analysis.regions.face)
