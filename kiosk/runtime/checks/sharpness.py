"""Sharpness: focus and motion blur of the face, normalised by face size.

Both are measured on the levelled face patch (geometry.face_patch: the eye distance is always the
same number of pixels), so a face far from the camera is judged like a near one.
- focus: the energy of the Laplacian over the energy of the intensity variation inside the face
  (the variance-of-Laplacian focus measure, divided by the variance so that contrast and light
  do not count);
- motion blur: the coherence of the gradient directions (structure tensor, (l1 - l2) / (l1 + l2)):
  a moving face is smeared along one direction, so its gradients turn the other way. A face has
  some coherence of its own (eyes, brows and mouth are horizontal), which the limit allows for;
  vertical motion first lowers it, so that case is left to the focus measure.
Both are image-quality checks: while one fails, the classifiers' verdicts are suppressed.
"""

from __future__ import annotations

import cv2
import numpy as np

from kiosk.contract.reasons import BLURRED, MOTION_BLUR
from kiosk.runtime.checks.base import CheckResult, MeasureCheck
from kiosk.runtime.checks.geometry import face_patch
from kiosk.runtime.vision.analysis import Analysis


class Focus(MeasureCheck):
    name = "sharpness"
    reason = BLURRED
    bound = "min"
    limit_key = "min_sharpness"
    quality = True

    def measure(self, analysis: Analysis) -> CheckResult:
        patch = face_patch(analysis)
        laplacian = cv2.Laplacian(patch.gray, cv2.CV_32F, ksize=1)[patch.mask]
        variance = float(patch.gray[patch.mask].var())
        return self.result(float(np.mean(laplacian**2)) / max(variance, 1.0))


class MotionBlur(MeasureCheck):
    name = "motion_blur"
    reason = MOTION_BLUR
    bound = "max"
    limit_key = "max_motion_blur"
    quality = True

    def measure(self, analysis: Analysis) -> CheckResult:
        patch = face_patch(analysis)
        gx = cv2.Sobel(patch.gray, cv2.CV_32F, 1, 0, ksize=3)[patch.mask]
        gy = cv2.Sobel(patch.gray, cv2.CV_32F, 0, 1, ksize=3)[patch.mask]
        jxx, jyy, jxy = float(gx @ gx), float(gy @ gy), float(gx @ gy)
        coherence = np.hypot(jxx - jyy, 2 * jxy) / max(jxx + jyy, 1e-6)
        angle = 0.5 * np.degrees(np.arctan2(2 * jxy, jxx - jyy))  # dominant gradient direction
        return self.result(float(coherence), details={"gradient_angle_deg": float(angle)})
