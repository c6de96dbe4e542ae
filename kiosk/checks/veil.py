"""Face covered (veil, mask, scarf): the veil classifier on the whole-face crop."""

from __future__ import annotations

from kiosk.analysis import Analysis
from kiosk.checks.base import ClassifierCheck
from kiosk.contract.models import COMPLIANCE


class Veil(ClassifierCheck):
    spec = COMPLIANCE["veil"]

    def score(self, analysis: Analysis) -> float:
        return self.classifier.score(analysis.regions.face)
