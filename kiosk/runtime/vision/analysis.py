"""Frame -> faces -> gates -> landmarks -> regions: the part of the pipeline before the classifiers.

The kiosk runs it on every frame; `training/collect.py` runs the same code over photos on disk to
cut training crops (the paper's data-collection pipeline), so training sees what the kiosk sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.contract.reasons import FACE_TOO_SMALL, NO_FACE, SEVERAL_FACES
from kiosk.runtime.vision.landmarks import LandmarkPredictor
from kiosk.runtime.vision.mtcnn_lite import MtcnnLite
from kiosk.runtime.vision.regions import Regions, extract_regions
from kiosk.runtime.vision.types import Face, Landmarks


@dataclass(frozen=True)
class Analysis:
    """Everything known about one frame before scoring. `reason` is set when a gate failed."""

    faces: list[Face]
    face: Face | None
    landmarks: Landmarks | None
    regions: Regions | None
    reason: str | None


class FaceAnalyzer:
    """Runs detection, the one-face and minimum-size gates, landmarks and region crops."""

    def __init__(
        self, detector: MtcnnLite, landmarks: LandmarkPredictor, min_face_px: int = 100
    ) -> None:
        self.detector = detector
        self.landmarks = landmarks
        self.min_face_px = min_face_px

    def analyze(self, rgb: np.ndarray) -> Analysis:
        faces = self.detector.detect(rgb)
        if not faces:
            return Analysis(faces, None, None, None, NO_FACE)
        if len(faces) > 1:
            return Analysis(faces, None, None, None, SEVERAL_FACES)
        face = faces[0]
        if min(face.width, face.height) < self.min_face_px:
            return Analysis(faces, face, None, None, FACE_TOO_SMALL)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        landmarks = self.landmarks.predict(gray, face.box)
        regions = extract_regions(gray, landmarks, face.box)
        return Analysis(faces, face, landmarks, regions, None)
