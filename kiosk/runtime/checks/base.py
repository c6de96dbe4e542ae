"""What every compliance check shares: its result, and the classifier-backed check.

A check is a callable with a `name` (its key in the JSON record) and a `reason` (the code a
failure gives); it takes the `Analysis` of one face that passed the gates and returns a
`CheckResult`. Classifier checks score a region crop with an int8 TFLite model whose manifest
entry gives the threshold and whose input must match the model's spec (kiosk/contract/models.py).
Measure checks compute one number from the landmarks or the pixels (`value`) and compare it with
a configured `limit` (`bound`: "max", "min" or "abs_max"); their record repeats them as
`score`/`threshold` so readers written for the classifiers still print something sensible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from kiosk.contract.errors import ModelError
from kiosk.contract.models import ModelSpec
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.tflite_io import BinaryClassifier
from kiosk.runtime.vision.analysis import Analysis

Bound = Literal["max", "min", "abs_max"]


@dataclass(frozen=True)
class CheckResult:
    """`score` is the probability of the failure (a classifier) or the measured value; `error` is
    set when the check could not run. Measure checks add `value`/`limit`/`bound`, may name a more
    specific `reason` than their own (which pose axis failed) and `details` (other numbers).
    `suppressed`: the verdict stands but its reason is not raised, because the image quality
    (dark, over-exposed, blurred) does not allow it to be trusted."""

    score: float
    threshold: float
    failed: bool
    error: str | None = None
    value: float | None = None
    limit: float | None = None
    bound: Bound | None = None
    reason: str | None = None
    details: Mapping[str, float] | None = None
    suppressed: bool = False

    @classmethod
    def errored(cls, threshold: float, message: str) -> CheckResult:
        """A check that could not run counts as failed: it cannot vouch for the photo."""
        return cls(math.nan, threshold, True, message)

    @classmethod
    def measured(
        cls,
        value: float,
        limit: float,
        bound: Bound,
        reason: str | None = None,
        details: Mapping[str, float] | None = None,
    ) -> CheckResult:
        """A measure against its limit; NaN (nothing to measure, e.g. no background in view)
        passes: the check cannot see a fault."""
        if bound == "max":
            failed = value > limit
        elif bound == "min":
            failed = value < limit
        else:
            failed = abs(value) > limit
        return cls(value, limit, bool(failed), None, value, limit, bound, reason, details)

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"score": None, "threshold": self.threshold, "failed": True, "error": self.error}
        record: dict[str, Any] = {
            "score": _number(self.score),
            "threshold": self.threshold,
            "failed": self.failed,
        }
        if self.value is not None:
            record |= {"value": _number(self.value), "limit": self.limit, "bound": self.bound}
        if self.details:
            record["details"] = {key: _number(v) for key, v in self.details.items()}
        if self.suppressed:
            record["suppressed"] = True
        return record


def _number(value: float) -> float | None:
    """JSON has no NaN: an unmeasurable value is null."""
    return None if math.isnan(value) else round(float(value), 6)


class Check(Protocol):
    name: str
    reason: str
    threshold: float
    # An image-quality check: when it fails, the classifier verdicts are suppressed.
    quality: bool
    # A verdict that bad image quality makes untrustworthy (the classifiers).
    suppressible: bool

    def __call__(self, analysis: Analysis) -> CheckResult: ...


class MeasureCheck:
    """A check computed from the landmarks or pixels against a limit of `[icao]` (IcaoConfig);
    subclasses set `name`, `reason`, `bound`, the field of their limit, and `measure()`."""

    name: ClassVar[str]
    reason: ClassVar[str]
    bound: ClassVar[Bound]
    limit_key: ClassVar[str]
    quality: ClassVar[bool] = False
    suppressible: ClassVar[bool] = False

    def __init__(self, limits: Any, token: Any = None) -> None:
        """Every measure is built from the `[icao]` limits and the `[token]` format; only the
        framing check (not a MeasureCheck) uses the latter."""
        del token
        self.limits = limits
        self.threshold = float(getattr(limits, self.limit_key))

    def measure(self, analysis: Analysis) -> CheckResult:
        raise NotImplementedError

    def __call__(self, analysis: Analysis) -> CheckResult:
        return self.measure(analysis)

    def result(
        self, value: float, reason: str | None = None, details: Mapping[str, float] | None = None
    ) -> CheckResult:
        return CheckResult.measured(value, self.threshold, self.bound, reason, details)


class ClassifierCheck:
    """A check scored by one compliance classifier; subclasses set `spec` and `score()`."""

    spec: ClassVar[ModelSpec]
    quality: ClassVar[bool] = False
    suppressible: ClassVar[bool] = True

    def __init__(self, registry: ModelRegistry, num_threads: int = 1) -> None:
        self.name = self.spec.name
        self.reason = str(self.spec.reason)
        entry = registry.entry(self.name)
        if entry.threshold is None:
            raise ModelError(f"manifest entry {self.name!r} has no threshold; re-run the export")
        self.threshold = entry.threshold
        self.classifier = BinaryClassifier(registry.verified_bytes(self.name), num_threads)
        problem = self.spec.shape_problem(self.classifier.model.input_shape)
        if problem:
            raise ModelError(f"{problem}: the bundle does not fit this kiosk version; redeploy")

    def score(self, analysis: Analysis) -> float:
        raise NotImplementedError

    def __call__(self, analysis: Analysis) -> CheckResult:
        score = self.score(analysis)
        return CheckResult(score, self.threshold, score >= self.threshold)
