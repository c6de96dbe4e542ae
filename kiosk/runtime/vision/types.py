"""Plain data passed between vision stages. Boxes are (x0, y0, x1, y1) in frame pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]

# iBUG 68-point groups, the same order as dlib's shape_predictor_68_face_landmarks.
# "right_eye" is the subject's right eye, which appears on the left of the image.
LANDMARK_GROUPS: dict[str, slice] = {
    "jaw": slice(0, 17),
    "right_eyebrow": slice(17, 22),
    "left_eyebrow": slice(22, 27),
    "nose": slice(27, 36),
    "right_eye": slice(36, 42),
    "left_eye": slice(42, 48),
    "outer_lips": slice(48, 60),
    "inner_lips": slice(60, 68),
}


@dataclass(frozen=True)
class Face:
    """One detected face: box, detector confidence and MTCNN's 5 keypoints (x, y)."""

    box: Box
    confidence: float
    keypoints: np.ndarray  # (5, 2): left eye, right eye (image order), nose, mouth left, right

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class Landmarks:
    """68 points (x, y) in frame pixels, with the iBUG groups by name."""

    points: np.ndarray  # (68, 2) float32

    def group(self, name: str) -> np.ndarray:
        return self.points[LANDMARK_GROUPS[name]]
