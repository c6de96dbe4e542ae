"""Compliance checks: int8 TFLite classifiers on region crops, thresholds from the manifest.

Each model outputs a logit (see training/nets.py); the score is its sigmoid, the probability of
the failure (eye closed, mouth open, face covered). A check fails when score >= threshold, the
DET-derived operating point stored by the training export. Eyes are scored one by one and the
higher score counts: one closed eye is enough to reject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiosk.errors import ModelError
from kiosk.litert import make_interpreter
from kiosk.registry import ModelRegistry
from kiosk.tflite_io import Model
from kiosk.vision.regions import Regions

EYES_CLOSED, MOUTH_OPEN, VEIL = "eyes_closed", "mouth_open", "veil"
CHECKS = (EYES_CLOSED, MOUTH_OPEN, VEIL)


class BinaryClassifier:
    """One TFLite classifier: grayscale uint8 crop (H, W) -> probability of the positive class."""

    def __init__(self, content: bytes, num_threads: int = 1) -> None:
        self.model = Model(make_interpreter(content, num_threads=num_threads))
        self.input_size = self.model.input_shape[1:3]

    def logit(self, crop: np.ndarray) -> float:
        if crop.shape != self.input_size:
            raise ValueError(f"crop of shape {crop.shape}, model expects {self.input_size}")
        return float(self.model(crop.astype(np.float32)[None, :, :, None]).reshape(-1)[0])

    def score(self, crop: np.ndarray) -> float:
        return float(1.0 / (1.0 + np.exp(-self.logit(crop))))


@dataclass(frozen=True)
class CheckResult:
    score: float
    threshold: float
    failed: bool

    def as_dict(self) -> dict[str, float | bool]:
        return {"score": round(self.score, 6), "threshold": self.threshold, "failed": self.failed}


class ComplianceChecks:
    """Scores the regions of one face against every check. Interpreters are built once."""

    def __init__(self, registry: ModelRegistry, num_threads: int = 1) -> None:
        self.classifiers: dict[str, BinaryClassifier] = {}
        self.thresholds: dict[str, float] = {}
        for name in CHECKS:
            entry = registry.entry(name)
            if entry.threshold is None:
                raise ModelError(f"manifest entry {name!r} has no threshold; re-run the export")
            self.classifiers[name] = BinaryClassifier(registry.verified_bytes(name), num_threads)
            self.thresholds[name] = entry.threshold

    def run(self, regions: Regions) -> dict[str, CheckResult]:
        eyes = max(
            self.classifiers[EYES_CLOSED].score(regions.right_eye),
            self.classifiers[EYES_CLOSED].score(regions.left_eye),
        )
        scores = {
            EYES_CLOSED: eyes,
            MOUTH_OPEN: self.classifiers[MOUTH_OPEN].score(regions.mouth),
            VEIL: self.classifiers[VEIL].score(regions.face),
        }
        return {
            name: CheckResult(score, self.thresholds[name], score >= self.thresholds[name])
            for name, score in scores.items()
        }
