"""The compliance pipeline: frame -> detection -> landmarks -> regions -> scores -> verdict.

Models are verified and interpreters built once, in the constructor; `check()` is the per-frame
path. The verdict's `as_record()` is the JSON contract other tools parse.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.config import Config
from kiosk.contract.reasons import ERROR_PROMPT, prompt_for
from kiosk.runtime.checks import ComplianceChecks
from kiosk.runtime.checks.base import CheckResult
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.analysis import Analysis, FaceAnalyzer
from kiosk.runtime.vision.detectors import DEFAULT_BACKEND, make_detector
from kiosk.runtime.vision.landmarks import LandmarkPredictor, find_model

ACCEPT, REJECT, ERROR = "accept", "reject", "error"


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
        return ERROR_PROMPT if self.decision == ERROR else prompt_for(self.reasons)

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
    """Verifies the bundle once (or takes a registry the caller already verified), builds every
    interpreter once; `check()` is the per-frame path."""

    def __init__(self, config: Config, registry: ModelRegistry | None = None) -> None:
        registry = registry or ModelRegistry(config.models_dir, config.models.public_key_path)
        self.registry = registry
        # [detector] backend and [gates] background_face_ratio are read with defaults until the
        # config schema declares them.
        detector = make_detector(
            getattr(config.detector, "backend", DEFAULT_BACKEND),
            registry,
            config.detector,
            num_threads=config.models.num_threads,
        )
        landmark_model = find_model(config.landmarks.model or None)
        _verify_if_listed(registry, landmark_model)
        landmarks = LandmarkPredictor(landmark_model, box_scale=config.landmarks.box_scale)
        self.analyzer = FaceAnalyzer(
            detector,
            landmarks,
            config.gates.min_face_px,
            background_face_ratio=getattr(config.gates, "background_face_ratio", 0.5),
        )
        self.checks = ComplianceChecks(
            registry, config.models.num_threads, limits=config.icao, token=config.token
        )

    def check(self, rgb: np.ndarray, still_scale: float = 1.0) -> tuple[Verdict, Analysis]:
        """The verdict on one frame. `still_scale`: pixels of the photo that will be stored per
        pixel of `rgb` (the preview or working-copy factor), for the resolution check."""
        analysis = self.analyzer.analyze(rgb)
        if still_scale != 1.0:
            analysis = dataclasses.replace(analysis, still_scale=still_scale)
        box = None if analysis.face is None else [round(v, 1) for v in analysis.face.box]
        if analysis.reason:
            return Verdict(REJECT, [analysis.reason], len(analysis.faces), box), analysis
        results = self.checks.run(analysis)
        reasons = self.checks.reasons(results)
        decision = REJECT if reasons else ACCEPT
        return Verdict(decision, reasons, 1, box, results), analysis
