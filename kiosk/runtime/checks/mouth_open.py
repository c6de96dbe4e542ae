"""Mouth open: the mouth classifier on the mouth crop."""

from __future__ import annotations

from kiosk.contract.models import COMPLIANCE
from kiosk.runtime.checks.base import ClassifierCheck
from kiosk.runtime.vision.analysis import Analysis


class MouthOpen(ClassifierCheck):
    spec = COMPLIANCE["mouth_open"]

    def score(self, analysis: Analysis) -> float:
        return self.classifier.score(analysis.regions.mouth)
