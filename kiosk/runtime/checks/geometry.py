"""Face geometry the image-measure checks share: eye centres and a face patch at a fixed scale.

Measures of sharpness, exposure and symmetry depend on how many pixels the face spans; each check
therefore samples the face into a patch where the eye distance is always `EYE_PX`, levelled on the
eye line, with a mask of the face from the landmarks (jaw line and brows). That makes one limit
hold for a face at any distance from the camera. What several checks read from one frame (the
patch, the background ring) is computed once per frame (`per_frame`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from kiosk.runtime.vision.analysis import Analysis

T = TypeVar("T")

PATCH_PX = 96  # side of the face patch
EYE_PX = 32.0  # eye-centre distance in the patch
EYE_ROW = 0.36  # height of the eye line in the patch, as a share of its side


def per_frame(function: Callable[[Analysis], T]) -> Callable[[Analysis], T]:
    """Remember the result for the last frame's landmarks (a new object on every frame), so the
    checks that share a measurement pay for it once. The key is held, so it cannot be reused by
    another frame; the (key, value) pair is swapped in one step, so threads see a whole one."""
    last: list[tuple[object, T] | None] = [None]

    @functools.wraps(function)
    def cached(analysis: Analysis) -> T:
        entry = last[0]
        if entry is not None and entry[0] is analysis.landmarks:
            return entry[1]
        value = function(analysis)
        last[0] = (analysis.landmarks, value)
        return value

    return cached


def eye_centres(analysis: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the subject's right eye (image left) and left eye, in frame pixels."""
    points = analysis.landmarks.points
    return points[36:42].mean(axis=0), points[42:48].mean(axis=0)


def eye_distance(analysis: Analysis) -> float:
    right, left = eye_centres(analysis)
    return float(np.linalg.norm(left - right))


@dataclass(frozen=True)
class FacePatch:
    """The face resampled to PATCH_PX square: `gray` (float32, 0-255), `mask` (bool, the face
    inside jaw and brows), `points` (the 68 landmarks in patch pixels), `midline` (patch x of the
    nose bridge)."""

    gray: np.ndarray
    mask: np.ndarray
    points: np.ndarray
    midline: float
    matrix: np.ndarray


def face_matrix(analysis: Analysis, size: int = PATCH_PX) -> np.ndarray:
    """Similarity transform frame -> patch: eye line level, eye distance EYE_PX * size / 96."""
    right, left = eye_centres(analysis)
    dx, dy = left - right
    scale = (EYE_PX * size / PATCH_PX) / max(float(np.hypot(dx, dy)), 1.0)
    angle = float(np.degrees(np.arctan2(dy, dx)))
    centre = (right + left) / 2
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    matrix[:, 2] += np.array([size / 2, EYE_ROW * size]) - centre
    return matrix


def warp(image: np.ndarray, matrix: np.ndarray, size: int = PATCH_PX) -> np.ndarray:
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


@per_frame
def face_patch(analysis: Analysis) -> FacePatch:
    """The grey face patch with its mask (see the module doc)."""
    matrix = face_matrix(analysis)
    gray = warp(analysis.gray, matrix).astype(np.float32)
    points = analysis.landmarks.points @ matrix[:, :2].T + matrix[:, 2]
    mask = np.zeros((PATCH_PX, PATCH_PX), np.uint8)
    hull = cv2.convexHull(np.round(points[:27]).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    midline = float(points[27:31, 0].mean())
    return FacePatch(gray, mask.astype(bool), points, midline, matrix)
