"""Grayscale region crops for the classifiers, cut from the landmarks on the eye line.

Each crop is one affine warp from the frame: rotate about the region centre so the line between
the eye centres is horizontal, scale the region square to the output size. Sizes, margins and
anchors are the region specs in kiosk/contract/models.py, which training cuts its crops with too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.contract.models import EYE, FACE, MOUTH
from kiosk.runtime.vision.types import Box, Landmarks


@dataclass(frozen=True)
class Regions:
    """The classifier inputs of one face, uint8 grayscale. `right_eye` is the subject's right."""

    right_eye: np.ndarray  # (56, 56)
    left_eye: np.ndarray  # (56, 56)
    mouth: np.ndarray  # (72, 72)
    face: np.ndarray  # (128, 128)
    roll_degrees: float


def eye_line_angle(landmarks: Landmarks) -> float:
    """Angle (degrees) of the line from the subject's right eye centre to the left eye centre."""
    right = landmarks.group("right_eye").mean(axis=0)
    left = landmarks.group("left_eye").mean(axis=0)
    dx, dy = left - right
    return float(np.degrees(np.arctan2(dy, dx)))


def crop_square(
    gray: np.ndarray, center: np.ndarray, side: float, angle: float, size: int
) -> np.ndarray:
    """Square of `side` px centred at `center`, rotated by `angle`, resampled to size x size."""
    scale = size / max(side, 1.0)
    matrix = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), angle, scale)
    matrix[:, 2] += np.array([size / 2, size / 2]) - center
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(
        gray, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE
    )


def _span(points: np.ndarray, first: int, second: int) -> float:
    return float(np.linalg.norm(points[second] - points[first]))


def extract_regions(gray: np.ndarray, landmarks: Landmarks, box: Box) -> Regions:
    """Cut both eyes, the mouth and the face from a grayscale frame."""
    points = landmarks.points
    angle = eye_line_angle(landmarks)
    crops = {}
    for name, first, second in (("right_eye", 36, 39), ("left_eye", 42, 45)):
        eye = landmarks.group(name)
        side = EYE.margin * max(_span(points, first, second), 4.0)
        crops[name] = crop_square(gray, eye.mean(axis=0), side, angle, EYE.size)
    lips = points[48:68]
    mouth_side = MOUTH.margin * max(_span(points, 48, 54), 4.0)
    mouth = crop_square(gray, lips.mean(axis=0), mouth_side, angle, MOUTH.size)
    x0, y0, x1, y1 = box
    face_center = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32)
    face = crop_square(gray, face_center, FACE.margin * max(x1 - x0, y1 - y0), angle, FACE.size)
    return Regions(
        right_eye=crops["right_eye"],
        left_eye=crops["left_eye"],
        mouth=mouth,
        face=face,
        roll_degrees=angle,
    )
