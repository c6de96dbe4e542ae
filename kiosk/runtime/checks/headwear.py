"""Head covering: is the forehead above the brows skin, coloured like the cheeks?

A hat, cap or scarf worn over the head comes down to the brows (or throws its brim's shadow
there); the band between the brows and half an eye distance above them then stops looking like
the cheeks. Measured on the levelled face at half the patch size, in YCrCb: a band pixel is "not skin" when its
chroma is more than CHROMA away from the cheeks' median or its luma is outside LUMA times theirs.
The value is the share of such pixels. Limits: a hair fringe over the forehead also counts (the
operator decides); a hat worn high on the head, leaving the forehead bare, is not seen. Only
synthetic hats could be tested (no labelled head-covering photos are at hand: docs/compliance.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from kiosk.contract.reasons import HEAD_COVERED
from kiosk.runtime.checks.base import CheckResult, MeasureCheck
from kiosk.runtime.checks.geometry import EYE_PX, PATCH_PX, face_matrix, warp
from kiosk.runtime.vision.analysis import Analysis

SIZE = PATCH_PX // 2  # colour needs fewer pixels than texture: half the face patch
EYE = EYE_PX / 2
CHROMA = 14.0  # Cr/Cb distance from the cheeks (0-255 units)
LUMA = (0.55, 1.6)  # luma range relative to the cheeks


class HeadCovering(MeasureCheck):
    name = "head_covering"
    reason = HEAD_COVERED
    bound = "max"
    limit_key = "max_forehead_non_skin"

    def measure(self, analysis: Analysis) -> CheckResult:
        matrix = face_matrix(analysis, SIZE)
        rgb = warp(analysis.rgb, matrix, SIZE)
        ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)
        points = analysis.landmarks.points @ matrix[:, :2].T + matrix[:, 2]
        brow = float(points[17:27, 1].min())
        top, bottom = _rows(brow - 0.5 * EYE), _rows(brow - 0.08 * EYE)
        x0, x1 = _rows(points[19, 0]), _rows(points[24, 0])
        forehead = ycrcb[top:bottom, x0:x1].reshape(-1, 3)
        eye_bottom = _rows(points[36:48, 1].max() + 0.1 * EYE)
        nose_bottom = _rows(points[33, 1])
        cheeks = np.concatenate(
            [
                ycrcb[eye_bottom:nose_bottom, _rows(points[36, 0]) : _rows(points[31, 0])],
                ycrcb[eye_bottom:nose_bottom, _rows(points[35, 0]) : _rows(points[45, 0])],
            ],
            axis=1,
        ).reshape(-1, 3)
        if forehead.shape[0] < 10 or cheeks.shape[0] < 10:  # brows at the patch edge: no band
            return self.result(float("nan"))
        skin = _median(cheeks)
        chroma = np.hypot(forehead[:, 1] - skin[1], forehead[:, 2] - skin[2])
        luma = forehead[:, 0] / max(float(skin[0]), 1.0)
        not_skin = (chroma > CHROMA) | (luma < LUMA[0]) | (luma > LUMA[1])
        return self.result(float(not_skin.mean()))


def _median(values: np.ndarray) -> np.ndarray:
    """`np.median(values, axis=0)` for NaN-free values, computed as it does (the middle one or two
    after a partition, then their mean), without its NaN check: that check imports numpy.ma
    (~12 ms) on the first call, which `kiosk check` on one photo pays in full (issue 16)."""
    half = len(values) // 2
    middle = [half - 1, half] if len(values) % 2 == 0 else [half]
    return np.partition(values, middle, axis=0)[middle].mean(axis=0)


def _rows(value: float) -> int:
    return min(max(round(float(value)), 0), SIZE)
