"""What every compliance check shares: its result, and the classifier-backed check.

A check is a callable with a `name` (its key in the JSON record) and a `reason` (the code a
failure gives); it takes the `Analysis` of one face that passed the gates and returns a
`CheckResult`. Classifier checks score a region crop with an int8 TFLite model whose manifest
entry gives the threshold and whose input must match the model's spec (kiosk/contract/models.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from kiosk.contract.errors import ModelError
from kiosk.contract.models import ModelSpec
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.tflite_io import BinaryClassifier
from kiosk.runtime.vision.analysis import Analysis


@dataclass(frozen=True)
class CheckResult:
    """`score` is the probability of the failure; `error` is set when the check could not run."""

    score: float
    threshold: float
    failed: bool
    error: str | None = None

    @classmethod
    def errored(cls, threshold: float, message: str) -> CheckResult:
        """A check that could not run counts as failed: it cannot vouch for the photo."""
        return cls(math.nan, threshold, True, message)

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"score": None, "threshold": self.threshold, "failed": True, "error": self.error}
        return {"score": round(self.score, 6), "threshold": self.threshold, "failed": self.failed}


class Check(Protocol):
    name: str
    reason: str
    threshold: float

    def __call__(self, analysis: Analysis) -> CheckResult: ...


class ClassifierCheck:
    """A check scored by one compliance classifier; subclasses set `spec` and `score()`."""

    spec: ClassVar[ModelSpec]

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
