"""Frame -> faces -> gates -> landmarks -> regions: the part of the pipeline before the classifiers.

The kiosk runs it on every frame; `training/collect.py` runs the same code over photos on disk to
cut training crops (the paper's data-collection pipeline), so training sees what the kiosk sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.contract.reasons import FACE_TOO_SMALL, NO_FACE, SEVERAL_FACES
from kiosk.runtime.vision.detectors import FaceDetector
from kiosk.runtime.vision.landmarks import LandmarkPredictor
from kiosk.runtime.vision.regions import Regions, extract_regions
from kiosk.runtime.vision.types import Face, Landmarks


@dataclass(frozen=True)
class Analysis:
    """Everything known about one frame before scoring. `reason` is set when a gate failed.

    `rgb` and `gray` are the analysed frame (set once the gates passed) for the image-measure
    checks; `still_scale` is how many pixels of the final still one analysed pixel spans, so the
    resolution check judges the photo that will be stored, not the preview.
    """

    faces: list[Face]
    face: Face | None
    landmarks: Landmarks | None
    regions: Regions | None
    reason: str | None
    rgb: np.ndarray | None = None
    gray: np.ndarray | None = None
    still_scale: float = 1.0


class FaceAnalyzer:
    """Runs detection, the one-face and minimum-size gates, landmarks and region crops.

    A face whose box side is under `background_face_ratio` x the largest face's side is a
    passer-by behind the applicant: it is ignored (and left out of `faces`) instead of refusing
    the frame; 0 counts every face.
    """

    def __init__(
        self,
        detector: FaceDetector,
        landmarks: LandmarkPredictor,
        min_face_px: int = 100,
        background_face_ratio: float = 0.5,
    ) -> None:
        self.detector = detector
        self.landmarks = landmarks
        self.min_face_px = min_face_px
        self.background_face_ratio = background_face_ratio

    def analyze(self, rgb: np.ndarray) -> Analysis:
        return self.analyze_faces(rgb, self.detector.detect(rgb))

    def analyze_faces(
        self, rgb: np.ndarray, faces: list[Face], gray: np.ndarray | None = None
    ) -> Analysis:
        """The gates, landmarks and crops for faces found in `rgb` by the detector or by the
        tracker (kiosk.runtime.vision.tracker); `gray`: the frame's grayscale copy if made."""
        if len(faces) > 1:
            largest = max(max(f.width, f.height) for f in faces)
            floor = self.background_face_ratio * largest
            faces = [f for f in faces if max(f.width, f.height) >= floor]
        if not faces:
            return Analysis(faces, None, None, None, NO_FACE)
        if len(faces) > 1:
            return Analysis(faces, None, None, None, SEVERAL_FACES)
        face = faces[0]
        if min(face.width, face.height) < self.min_face_px:
            return Analysis(faces, face, None, None, FACE_TOO_SMALL)
        if gray is None:
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        landmarks = self.landmarks.predict(gray, face.box)
        regions = extract_regions(gray, landmarks, face.box)
        return Analysis(faces, face, landmarks, regions, None, rgb, gray)

    def follow(
        self,
        rgb: np.ndarray,
        gray: np.ndarray,
        face: Face,
        fit: Analysis,
        max_crop_change: float,
    ) -> tuple[Analysis, bool]:
        """The analysis of a tracked `face`, reusing dlib's last `fit` when it still holds: its
        landmarks moved with the box, kept if every crop they cut differs from the fit's crops
        by at most `max_crop_change` mean grey levels (a blink, an opening mouth or a turn
        changes a crop, and dlib runs again). Returns the analysis and whether the fit held."""
        shift = np.subtract(face.box[:2], fit.face.box[:2]).astype(np.float32)
        landmarks = Landmarks(points=fit.landmarks.points + shift)
        regions = extract_regions(gray, landmarks, face.box)
        held = all(
            float(cv2.absdiff(getattr(regions, name), getattr(fit.regions, name)).mean())
            <= max_crop_change
            for name in ("right_eye", "left_eye", "mouth", "face")
        )
        if not held:
            return self.analyze_faces(rgb, [face], gray), False
        return Analysis([face], face, landmarks, regions, None, rgb, gray), True
