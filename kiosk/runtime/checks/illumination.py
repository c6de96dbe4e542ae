"""Illumination uniformity: the left and right halves of the face lit alike.

As OFIQ's illumination uniformity (ISO/IEC 29794-5): the luma histograms of the two face halves,
split at the nose bridge on the levelled face patch, are compared by histogram intersection (1:
identical, 0: disjoint). A face half in shadow shifts one histogram away from the other.
"""

from __future__ import annotations

import numpy as np

from kiosk.contract.reasons import UNEVEN_LIGHT
from kiosk.runtime.checks.base import CheckResult, MeasureCheck
from kiosk.runtime.checks.geometry import PATCH_PX, face_patch
from kiosk.runtime.vision.analysis import Analysis

BINS = 32


def _histogram(luma: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.clip(luma // 8, 0, BINS - 1).astype(np.int64), None, BINS)
    return counts / max(counts.sum(), 1)


class IlluminationUniformity(MeasureCheck):
    name = "illumination"
    reason = UNEVEN_LIGHT
    bound = "min"
    limit_key = "min_illumination_uniformity"

    def measure(self, analysis: Analysis) -> CheckResult:
        patch = face_patch(analysis)
        left_side = np.arange(PATCH_PX)[None, :] < patch.midline
        left = patch.gray[patch.mask & left_side]
        right = patch.gray[patch.mask & ~left_side]
        if min(left.size, right.size) < 50:  # a face turned so far one half is not in view
            return self.result(float("nan"))
        intersection = float(np.minimum(_histogram(left), _histogram(right)).sum())
        ratio = float(min(left.mean(), right.mean()) / max(left.mean(), right.mean(), 1.0))
        return self.result(intersection, details={"mean_ratio": ratio})
