"""Score fusion: the classifier's logit with landmark geometry, by a logistic regression.

Why: a CNN trained on a few hundred crops ranks well but its scale drifts between sources (the
mouth model flags closed mouths on faces it never saw), while a landmark measure (eye aspect
ratio, OFIQ's mouth opening) is source-independent but noisy. A logistic regression over both,
fitted on validation faces by `training/evaluate_faces.py`, is shipped in the model's manifest
entry as `fusion` = {"features": [...], "weights": [...], "bias": b} (the shared `Fusion` of
kiosk/runtime/models/fusion.py, which the morph check uses too); the check then reports the
fused probability as its `score`, keeps the CNN's own score and the measure in `details`.
An entry without `fusion` keeps the CNN score alone. Every `*cnn_score` feature enters the fusion
as its logit (`cnn_score` -> `cnn_logit`, `lower_eye_cnn_score` -> `lower_eye_cnn_logit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from kiosk.runtime.checks.base import CheckResult, ClassifierCheck
from kiosk.runtime.models.fusion import CNN_LOGIT, Fusion, logit
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.analysis import Analysis

REMEDY = "re-run training/evaluate_faces.py --ship"
SCORE_SUFFIX = "cnn_score"


def fusion_name(feature: str) -> str:
    """A feature's name in a fusion: a CNN score enters as its logit."""
    if feature.endswith(SCORE_SUFFIX):
        return feature.removesuffix(SCORE_SUFFIX) + CNN_LOGIT
    return feature


def fusion_value(feature: str, value: float) -> float:
    return logit(value) if feature.endswith(SCORE_SUFFIX) else value


class FusedClassifierCheck(ClassifierCheck):
    """A classifier check whose score may be fused with one landmark measure (`geometry`).

    Subclasses give `cnn_score()` (the classifier on its crops) and `measure()` (the landmark
    measure), or their own `features()` (the eye check: both eyes' scores at once). The record's
    `details` always carry both, so an operator or an evaluation sees what the fused score was
    made of.
    """

    geometry: ClassVar[str]
    # More fusion inputs a subclass computes in `features()` (a fusion may use any of them).
    extra_features: ClassVar[tuple[str, ...]] = ()

    def __init__(self, registry: ModelRegistry, num_threads: int = 1) -> None:
        super().__init__(registry, num_threads)
        extra = registry.entry(self.name).model_extra
        known = {self.geometry, *(fusion_name(f) for f in self.extra_features)}
        self.fusion = Fusion.from_entry(extra, self.name, known, REMEDY)

    def cnn_score(self, analysis: Analysis) -> float:
        raise NotImplementedError

    def measure(self, analysis: Analysis) -> float:
        raise NotImplementedError

    def features(self, analysis: Analysis) -> dict[str, float]:
        """The CNN score and the landmark measure of one face."""
        return {"cnn_score": self.cnn_score(analysis), self.geometry: self.measure(analysis)}

    def combine(self, features: Mapping[str, float]) -> float:
        """The check's score from its features: fused when the bundle ships a fusion."""
        if self.fusion is None:
            return features["cnn_score"]
        return self.fusion.score({fusion_name(k): fusion_value(k, v) for k, v in features.items()})

    def score(self, analysis: Analysis) -> float:
        return self.combine(self.features(analysis))

    def __call__(self, analysis: Analysis) -> CheckResult:
        features = self.features(analysis)
        score = self.combine(features)
        return CheckResult(score, self.threshold, score >= self.threshold, details=features)
