"""Score fusion: the classifier's logit with landmark geometry, by a logistic regression.

Why: a CNN trained on a few hundred crops ranks well but its scale drifts between sources (the
mouth model flags closed mouths on faces it never saw), while a landmark measure (eye aspect
ratio, OFIQ's mouth opening) is source-independent but noisy. A logistic regression over both,
fitted on validation faces by `training/evaluate_faces.py`, is shipped in the model's manifest
entry as `fusion` = {"features": [...], "weights": [...], "bias": b}; the check then reports the
fused probability as its `score`, keeps the CNN's own score and the measure in `details`.
An entry without `fusion` keeps the CNN score alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from kiosk.contract.errors import ModelError
from kiosk.runtime.checks.base import CheckResult, ClassifierCheck
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.analysis import Analysis

CNN_LOGIT = "cnn_logit"
LOGIT_CLIP = 20.0  # an int8 logit never exceeds this; keeps a saturated score finite


def logit(probability: float) -> float:
    """The log-odds of a score, clipped so 0 and 1 stay finite."""
    p = min(max(probability, 1e-9), 1 - 1e-9)
    return max(-LOGIT_CLIP, min(LOGIT_CLIP, math.log(p / (1 - p))))


@dataclass(frozen=True)
class Fusion:
    """score = sigmoid(bias + sum(weight_i * feature_i)); features by name."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float

    @classmethod
    def from_entry(cls, extra: Mapping[str, Any], name: str, known: set[str]) -> Fusion | None:
        """The `fusion` field of a manifest entry (None when absent). ModelError when it names a
        feature this kiosk version does not compute or its numbers do not match."""
        raw = extra.get("fusion")
        if raw is None:
            return None
        try:
            features = tuple(str(f) for f in raw["features"])
            weights = tuple(float(w) for w in raw["weights"])
            bias = float(raw["bias"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"manifest entry {name!r}: `fusion` needs features, weights and bias ({exc}); "
                "re-run training/evaluate_faces.py --ship"
            ) from None
        unknown = set(features) - known - {CNN_LOGIT}
        if unknown or len(features) != len(weights) or not features:
            raise ModelError(
                f"manifest entry {name!r}: fusion features {list(features)} with "
                f"{len(weights)} weights; this kiosk computes {sorted(known | {CNN_LOGIT})}: "
                "redeploy a bundle made for this version"
            )
        if not all(math.isfinite(v) for v in (*weights, bias)):
            raise ModelError(f"manifest entry {name!r}: fusion weights must be finite numbers")
        return cls(features, weights, bias)

    def score(self, values: Mapping[str, float]) -> float:
        """Fused probability; `values` holds every feature (cnn_logit included)."""
        z = self.bias + sum(w * values[f] for f, w in zip(self.features, self.weights, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def as_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "weights": list(self.weights), "bias": self.bias}


class FusedClassifierCheck(ClassifierCheck):
    """A classifier check whose score may be fused with one landmark measure (`geometry`).

    Subclasses give `cnn_score()` (the classifier on its crops) and `measure()` (the landmark
    measure). The record's `details` always carry both, so an operator or an evaluation sees
    what the fused score was made of.
    """

    geometry: ClassVar[str]

    def __init__(self, registry: ModelRegistry, num_threads: int = 1) -> None:
        super().__init__(registry, num_threads)
        extra = registry.entry(self.name).model_extra or {}
        self.fusion = Fusion.from_entry(extra, self.name, {self.geometry})

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
        return self.fusion.score({**features, CNN_LOGIT: logit(features["cnn_score"])})

    def score(self, analysis: Analysis) -> float:
        return self.combine(self.features(analysis))

    def __call__(self, analysis: Analysis) -> CheckResult:
        features = self.features(analysis)
        score = self.combine(features)
        return CheckResult(score, self.threshold, score >= self.threshold, details=features)
