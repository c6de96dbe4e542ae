"""Exposure of the face: too dark, over-exposed, too little dynamic range.

Measured on the face inside the jaw line and brows (geometry.face_patch), as OFIQ (ISO/IEC
29794-5) does: under-exposure is the share of face pixels at luma 0-25, over-exposure the share at
247-255, dynamic range the entropy (bits) of the face's luma histogram. These are image-quality
checks: while one fails, the classifiers' verdicts are suppressed.
"""

from __future__ import annotations

import numpy as np

from kiosk.contract.reasons import LOW_CONTRAST, OVEREXPOSED, TOO_DARK
from kiosk.runtime.checks.base import CheckResult, MeasureCheck
from kiosk.runtime.checks.geometry import face_patch
from kiosk.runtime.vision.analysis import Analysis


def face_luma(analysis: Analysis) -> np.ndarray:
    patch = face_patch(analysis)
    return patch.gray[patch.mask]


class UnderExposure(MeasureCheck):
    name = "underexposure"
    reason = TOO_DARK
    bound = "max"
    limit_key = "max_dark_fraction"
    quality = True

    def measure(self, analysis: Analysis) -> CheckResult:
        luma = face_luma(analysis)
        return self.result(float(np.mean(luma <= 25)), details={"mean_luma": float(luma.mean())})


class OverExposure(MeasureCheck):
    name = "overexposure"
    reason = OVEREXPOSED
    bound = "max"
    limit_key = "max_bright_fraction"
    quality = True

    def measure(self, analysis: Analysis) -> CheckResult:
        luma = face_luma(analysis)
        return self.result(float(np.mean(luma >= 247)), details={"mean_luma": float(luma.mean())})


class DynamicRange(MeasureCheck):
    name = "dynamic_range"
    reason = LOW_CONTRAST
    bound = "min"
    limit_key = "min_dynamic_range_bits"
    quality = True

    def measure(self, analysis: Analysis) -> CheckResult:
        histogram = np.bincount(np.clip(face_luma(analysis), 0, 255).astype(np.int64), None, 256)
        p = histogram[histogram > 0] / histogram.sum()
        return self.result(float(-(p * np.log2(p)).sum()))
