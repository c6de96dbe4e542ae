"""Checks as plugins: each model matches its spec at load, and one check's fault stays its own."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kiosk.contract import models, reasons
from kiosk.contract.errors import ModelError
from kiosk.runtime.checks import PLUGINS, ComplianceChecks
from kiosk.runtime.checks.base import CheckResult
from kiosk.runtime.models.registry import ModelRegistry
from tests.conftest import REPO


def test_every_compliance_spec_has_a_plugin_and_a_prompt() -> None:
    assert list(PLUGINS) == list(models.COMPLIANCE)
    for spec in models.COMPLIANCE.values():
        assert spec.reason in reasons.PROMPTS
        assert spec.input_shape == (1, spec.region.size, spec.region.size, 1)


def test_shipped_manifest_matches_the_specs() -> None:
    manifest = json.loads((REPO / "models" / "manifest.json").read_text())["models"]
    for name, spec in models.SPECS.items():
        if name in manifest and spec.input_shape:
            assert spec.shape_problem(manifest[name]["input_shape"]) is None, name


def test_a_model_whose_input_differs_from_its_crop_is_refused_at_load(tmp_path: Path) -> None:
    """The mouth model (72x72) shipped as the eye model (56x56) would fail on every frame."""
    source = REPO / "models"
    manifest = json.loads((source / "manifest.json").read_text())
    for entry in manifest["models"].values():
        shutil.copy(source / entry["file"], tmp_path / entry["file"])
    manifest["models"]["eyes_closed"] = manifest["models"]["mouth_open"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"'eyes_closed' takes input \[1, 72, 72, 1\]"):
        ComplianceChecks(ModelRegistry(tmp_path))


def test_a_failing_check_is_its_own_error(pipeline, portrait: np.ndarray) -> None:
    checks = pipeline.checks
    index, mouth = next((i, c) for i, c in enumerate(checks.checks) if c.name == "mouth_open")

    def broken(analysis: object) -> CheckResult:
        raise ZeroDivisionError("division by zero")

    checks.checks[index] = dataclasses.replace(_Stub.of(mouth), call=broken)
    try:
        verdict, _ = pipeline.check(portrait)
    finally:
        checks.checks[index] = mouth
    assert verdict.decision == "reject"
    assert reasons.CHECK_ERROR in verdict.reasons and reasons.MOUTH_OPEN not in verdict.reasons
    record = verdict.as_record("frame", 0)["checks"]
    assert record["mouth_open"] == {
        "score": None,
        "threshold": mouth.threshold,
        "failed": True,
        "error": "ZeroDivisionError: division by zero",
    }
    assert record["eyes_closed"]["failed"] is False and "error" not in record["eyes_closed"]
    assert verdict.prompt == reasons.PROMPTS[reasons.CHECK_ERROR]


@dataclasses.dataclass(frozen=True)
class _Stub:
    """Stands in for a check with the same identity and a given behaviour."""

    name: str
    reason: str
    threshold: float
    quality: bool
    suppressible: bool
    call: object

    @classmethod
    def of(cls, check: object) -> _Stub:
        return cls(
            check.name, check.reason, check.threshold, check.quality, check.suppressible, None
        )

    def __call__(self, analysis: object) -> CheckResult:
        return self.call(analysis)


def test_errored_result_counts_as_failed() -> None:
    result = CheckResult.errored(0.4, "boom")
    assert result.failed and result.as_dict()["score"] is None
