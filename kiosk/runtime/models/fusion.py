"""Logistic score fusion: one probability from several named features, shipped in a manifest entry.

Why one type: the compliance checks fuse a CNN's logit with a landmark measure
(`kiosk/runtime/checks/fusion.py`) and the morph check fuses its CNN's logit with its trees'
(`kiosk/runtime/forensics/morph.py`); both are a logistic regression fitted in training and
shipped as the entry's `fusion` = {"features": [...], "weights": [...], "bias": b}. It lives
here, below checks and forensics, so both layers read, validate and score it the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kiosk.contract.errors import ModelError

CNN_LOGIT = "cnn_logit"
LOGIT_CLIP = 20.0  # an int8 logit never exceeds this; keeps a saturated score finite
_Z_CLIP = 50.0  # exp(50) is finite in float64; the probability is 0 or 1 beyond it anyway


def sigmoid(z: float) -> float:
    """The probability of a log-odds, clipped so a saturated logit gives 0 or 1, not an overflow."""
    return 1.0 / (1.0 + math.exp(-max(-_Z_CLIP, min(_Z_CLIP, z))))


def sigmoids(z: np.ndarray) -> np.ndarray:
    """`sigmoid` of every element of an array (tile maps, tree scores), clipped the same way."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -_Z_CLIP, _Z_CLIP)))


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
    def from_entry(
        cls,
        extra: Mapping[str, Any],
        name: str,
        known: set[str],
        remedy: str = "re-export the model with this version's training",
    ) -> Fusion | None:
        """The `fusion` field of manifest entry `name` (None when absent). ModelError, ending in
        `remedy`, when it is malformed (an older format included) or names a feature this kiosk
        version does not compute (`known`, plus the CNN's logit)."""
        raw = extra.get("fusion")
        if raw is None:
            return None
        try:
            features = tuple(str(f) for f in raw["features"])
            weights = tuple(float(w) for w in raw["weights"])
            bias = float(raw["bias"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"manifest entry {name!r}: `fusion` needs features, weights and bias "
                f'({{"features": [...], "weights": [...], "bias": b}}; got {_describe(raw, exc)}); '
                f"{remedy}"
            ) from None
        unknown = set(features) - known - {CNN_LOGIT}
        if unknown or len(features) != len(weights) or not features:
            raise ModelError(
                f"manifest entry {name!r}: fusion features {list(features)} with "
                f"{len(weights)} weights; this kiosk computes {sorted(known | {CNN_LOGIT})}: "
                f"redeploy a bundle made for this version or {remedy}"
            )
        if not all(math.isfinite(v) for v in (*weights, bias)):
            raise ModelError(f"manifest entry {name!r}: fusion weights must be finite numbers")
        return cls(features, weights, bias)

    def log_odds(self, values: Mapping[str, Any]) -> Any:
        """bias + sum(weight_i * feature_i): floats give a float, numpy columns a column."""
        return self.bias + sum(
            w * values[f] for f, w in zip(self.features, self.weights, strict=True)
        )

    def score(self, values: Mapping[str, float]) -> float:
        """Fused probability; `values` holds every feature (cnn_logit included)."""
        return sigmoid(self.log_odds(values))

    def as_dict(self) -> dict[str, Any]:
        """The manifest entry's `fusion` field (what `from_entry` reads back)."""
        return {"features": list(self.features), "weights": list(self.weights), "bias": self.bias}


def _describe(raw: Any, exc: Exception) -> str:
    """What was found instead, for the error: the keys of a mapping, else the type."""
    if isinstance(raw, Mapping):
        return f"keys {sorted(map(str, raw))}"
    return f"{type(raw).__name__} ({exc})"
