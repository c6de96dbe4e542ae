"""The compliance pipeline: frame -> detection -> landmarks -> regions -> scores -> verdict.

Models are verified and interpreters built once, in the constructor; `check()` is the per-frame
path. The verdict's `as_record()` is the JSON contract other tools parse.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from kiosk.config import Config, TrackingConfig
from kiosk.contract.reasons import ERROR_PROMPT, prompt_for
from kiosk.runtime.checks import ComplianceChecks
from kiosk.runtime.checks.base import Check, CheckResult
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.analysis import Analysis, FaceAnalyzer
from kiosk.runtime.vision.detectors import make_detector
from kiosk.runtime.vision.landmarks import landmark_predictor
from kiosk.runtime.vision.tracker import FaceTracker, TrackerSettings, small_copy
from kiosk.runtime.vision.types import Face

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


class CompliancePipeline:
    """Verifies the bundle once (or takes a registry the caller already verified), builds every
    interpreter once; `check()` is the per-frame path."""

    def __init__(self, config: Config, registry: ModelRegistry | None = None) -> None:
        registry = registry or ModelRegistry(config.models_dir, config.models.public_key_path)
        self.registry = registry
        detector = make_detector(
            config.detector.backend,
            registry,
            config.detector,
            num_threads=config.models.num_threads,
        )
        landmarks = landmark_predictor(config, registry)
        self.analyzer = FaceAnalyzer(
            detector,
            landmarks,
            config.gates.min_face_px,
            background_face_ratio=config.gates.background_face_ratio,
        )
        self.checks = ComplianceChecks(
            registry, config.models.num_threads, limits=config.icao, token=config.token
        )

    def check(self, rgb: np.ndarray, still_scale: float = 1.0) -> tuple[Verdict, Analysis]:
        """The verdict on one frame. `still_scale`: pixels of the photo that will be stored per
        pixel of `rgb` (the preview or working-copy factor), for the resolution check."""
        return judge(self.analyzer.analyze(rgb), self.checks, still_scale)


def judge(
    analysis: Analysis, checks: ComplianceChecks, still_scale: float = 1.0
) -> tuple[Verdict, Analysis]:
    """The verdict on an analysed frame: the gate's reason, else every check's."""
    if still_scale != 1.0:
        analysis = dataclasses.replace(analysis, still_scale=still_scale)
    box = None if analysis.face is None else [round(v, 1) for v in analysis.face.box]
    if analysis.reason:
        return Verdict(REJECT, [analysis.reason], len(analysis.faces), box), analysis
    results = checks.run(analysis)
    reasons = checks.reasons(results)
    decision = REJECT if reasons else ACCEPT
    return Verdict(decision, reasons, 1, box, results), analysis


# The region crops each classifier reads. The landmark-only measures (sub-millisecond) run on
# every frame: they follow the face's position. The image measures read the frame around the
# face: keyed on the face crop, a frame thumbnail and the landmarks' motion.
CLASSIFIER_CROPS = {
    "eyes_closed": ("right_eye", "left_eye"),
    "mouth_open": ("mouth",),
    "veil": ("face",),
}
EVERY_FRAME = frozenset({"framing", "resolution", "head_pose"})
_THUMBNAIL = (32, 24)


@dataclass
class TrackingStats:
    """What the tracked path did, for benchmarks and the service's counters."""

    frames: int = 0
    tracked: int = 0
    reused_gate: int = 0
    detections: Counter[str] = field(default_factory=Counter)
    landmarks_reused: int = 0
    check_runs: int = 0
    check_reuses: int = 0

    @property
    def detection_rate(self) -> float:
        return sum(self.detections.values()) / max(self.frames, 1)


class _Reused:
    """One check whose last result stands while its input is unchanged: the crops it reads
    within `max_crop_change` grey levels, (measures) the frame thumbnail too and every landmark
    within `max_landmark_motion_px`, for at most `rescore_every` frames."""

    def __init__(
        self, check: Check, crops: tuple[str, ...] | None, owner: TrackingPipeline
    ) -> None:
        self._check = check
        self._crops = crops
        self._owner = owner
        self._key: list[np.ndarray] | None = None
        self._points: np.ndarray | None = None
        self._result: CheckResult | None = None
        self._age = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._check, name)

    def forget(self) -> None:
        self._result = None

    def __call__(self, analysis: Analysis) -> CheckResult:
        settings, owner = self._owner.settings, self._owner
        regions, landmarks = analysis.regions, analysis.landmarks
        if self._crops is None:
            key = [regions.face, owner.thumbnail]
            points = landmarks.points
        else:
            key = [getattr(regions, name) for name in self._crops]
            points = None
        if self._result is not None and self._age + 1 < settings.rescore_every:
            unchanged = all(
                float(cv2.absdiff(new, old).mean()) <= settings.max_crop_change
                for new, old in zip(key, self._key, strict=True)
            )
            if unchanged and points is not None:
                motion = float(np.abs(points - self._points).max())
                unchanged = motion <= settings.max_landmark_motion_px
            if unchanged:
                self._age += 1
                owner.stats.check_reuses += 1
                return self._result
        result = self._check(analysis)
        owner.stats.check_runs += 1
        self._key, self._points, self._result, self._age = key, points, result, 0
        return result


class TrackingPipeline:
    """The pipeline for one video or camera stream: the face is tracked between detections
    (kiosk.runtime.vision.tracker) and a check's result is reused while its input is unchanged,
    so most frames cost the tracker, dlib's landmarks and the crops. Stateful: one per stream;
    photos go through the stateless `CompliancePipeline.check`."""

    def __init__(
        self, pipeline: CompliancePipeline, settings: TrackingConfig | None = None
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings or TrackingConfig()
        self.tracker = FaceTracker(
            TrackerSettings(
                redetect_every=self.settings.redetect_every,
                min_correlation=self.settings.min_correlation,
                max_scene_change=self.settings.max_scene_change,
            )
        )
        self._wrapped = [
            _Reused(check, CLASSIFIER_CROPS.get(check.name), self)
            for check in pipeline.checks.checks
            if check.name not in EVERY_FRAME
        ]
        wrapped = {check.name: check for check in self._wrapped}
        self.checks = copy.copy(pipeline.checks)
        self.checks.checks = [wrapped.get(c.name, c) for c in pipeline.checks.checks]
        self.stats = TrackingStats()
        self.thumbnail: np.ndarray | None = None
        self._last: Analysis | None = None
        self._fit: Analysis | None = None  # dlib's last landmarks and crops on this stream
        self._still_scale = 1.0

    def reset(self) -> None:
        """Forget the stream (a new source): the next frame is detected and checked afresh."""
        self.tracker.reset()
        self._forget()

    def _forget(self) -> None:
        self._last = self._fit = None
        for check in self._wrapped:
            check.forget()

    def check(self, rgb: np.ndarray, still_scale: float = 1.0) -> tuple[Verdict, Analysis]:
        """The verdict on the stream's next frame (same record as `CompliancePipeline.check`)."""
        self.stats.frames += 1
        if still_scale != self._still_scale:
            self._still_scale = still_scale
            self._forget()
        analyzer = self.pipeline.analyzer
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        small = small_copy(gray)
        self.thumbnail = cv2.resize(small, _THUMBNAIL, interpolation=cv2.INTER_AREA)
        due = self.tracker.due(small)
        analysis = None
        if due is None and not self.tracker.tracking and self._last is not None:
            self.tracker.since_detection += 1  # the gate's verdict on an unchanged scene stands
            self.stats.reused_gate += 1
            analysis = self._last
        elif due is None:
            face = self.tracker.track(small)
            if face is None:
                due = "correlation"
            else:
                analysis = self._follow(rgb, gray, face)
                if analysis.reason:  # the tracked face shrank: let the detector judge
                    due = "gate"
                else:
                    self.stats.tracked += 1
        if due is not None:
            self.stats.detections[due] += 1
            analysis = analyzer.analyze_faces(rgb, analyzer.detector.detect(rgb), gray)
            self.tracker.start(None if analysis.reason else analysis.face, small)
            self._fit = None if analysis.reason else analysis
            if analysis.reason:
                self._forget()
                self._last = analysis
        return judge(analysis, self.checks, still_scale)

    def _follow(self, rgb: np.ndarray, gray: np.ndarray, face: Face) -> Analysis:
        """Landmarks for a tracked face: dlib's last fit moved with the face while its crops
        hold, else dlib again (which becomes the fit)."""
        if self._fit is None:
            analysis = self.pipeline.analyzer.analyze_faces(rgb, [face], gray)
        else:
            analysis, held = self.pipeline.analyzer.follow(
                rgb, gray, face, self._fit, self.settings.max_crop_change
            )
            if held:
                self.stats.landmarks_reused += 1
                return analysis
        self._fit = None if analysis.reason else analysis
        return analysis
