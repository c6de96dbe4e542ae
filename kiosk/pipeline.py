"""The compliance pipeline: frame -> detection -> landmarks -> regions -> scores -> verdict.

Models are verified and interpreters built once, in the constructor; `check()` is the per-frame
path. The verdict's `as_record()` is the JSON contract other tools parse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.analysis import FACE_TOO_SMALL, NO_FACE, SEVERAL_FACES, Analysis, FaceAnalyzer
from kiosk.checks import EYES_CLOSED, MOUTH_OPEN, VEIL, CheckResult, ComplianceChecks
from kiosk.config import Config
from kiosk.registry import ModelRegistry
from kiosk.vision.landmarks import LandmarkPredictor, find_model
from kiosk.vision.mtcnn_lite import MtcnnLite

ACCEPT, REJECT, ERROR = "accept", "reject", "error"
FACE_COVERED = "face_covered"
CHECK_REASONS = {EYES_CLOSED: EYES_CLOSED, MOUTH_OPEN: MOUTH_OPEN, VEIL: FACE_COVERED}

# What the operator is told for each reason, most urgent first (the prompt shows the first).
PROMPTS = {
    NO_FACE: "Please stand in front of the camera",
    SEVERAL_FACES: "Only one person please",
    FACE_TOO_SMALL: "Please move closer",
    FACE_COVERED: "Please remove the face covering",
    EYES_CLOSED: "Please open your eyes",
    MOUTH_OPEN: "Please close your mouth",
}


@dataclass(frozen=True)
class Verdict:
    decision: str
    reasons: list[str]
    faces: int
    face_box: list[float] | None
    checks: dict[str, CheckResult] = field(default_factory=dict)
    error: str | None = None

    @property
    def prompt(self) -> str:
        if self.decision == ERROR:
            return "Camera or image problem: please call the operator"
        if not self.reasons:
            return "Ready — hold still"
        return next(PROMPTS[r] for r in PROMPTS if r in self.reasons)

    def as_record(self, source: str, frame: int) -> dict[str, Any]:
        return {
            "source": source,
            "frame": frame,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "faces": self.faces,
            "face_box": self.face_box,
            "checks": {name: result.as_dict() for name, result in self.checks.items()},
            "error": self.error,
        }


def error_verdict(message: str) -> Verdict:
    return Verdict(ERROR, [], 0, None, {}, message)


def _verify_if_listed(registry: ModelRegistry, path: Path) -> None:
    """A landmark model shipped in the bundle is hash-checked like every other model file."""
    for name, entry in registry.entries.items():
        if (registry.models_dir / entry.file).resolve() == path.resolve():
            registry.verified_bytes(name)


class CompliancePipeline:
    def __init__(self, config: Config) -> None:
        registry = ModelRegistry(config.models_dir)
        detector = MtcnnLite(registry, config.detector, num_threads=config.models.num_threads)
        landmark_model = find_model(config.landmarks.model or None)
        _verify_if_listed(registry, landmark_model)
        landmarks = LandmarkPredictor(landmark_model, box_scale=config.landmarks.box_scale)
        self.analyzer = FaceAnalyzer(detector, landmarks, config.gates.min_face_px)
        self.checks = ComplianceChecks(registry, num_threads=config.models.num_threads)

    def check(self, rgb: np.ndarray) -> tuple[Verdict, Analysis]:
        analysis = self.analyzer.analyze(rgb)
        box = None if analysis.face is None else [round(v, 1) for v in analysis.face.box]
        if analysis.reason:
            return Verdict(REJECT, [analysis.reason], len(analysis.faces), box), analysis
        results = self.checks.run(analysis.regions)
        reasons = [CHECK_REASONS[name] for name, result in results.items() if result.failed]
        decision = REJECT if reasons else ACCEPT
        return Verdict(decision, reasons, 1, box, results), analysis
