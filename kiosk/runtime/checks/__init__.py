"""Compliance checks as plugins: one module per check, run by `ComplianceChecks`.

`PLUGINS` are the classifier checks, built from the verified model bundle; `MEASURES` are the
image-measure checks (pose, resolution, exposure, illumination, sharpness, background, head
covering), built from the `[icao]` limits. Adding a check is one module here, its reason code and
prompt (kiosk/contract/reasons.py), a limit with its source, and one test.

Each check runs isolated: an exception in one becomes that check's error (it fails, reason
`check_error`), the other checks still report, and the frame is not lost. When an image-quality
check fails (dark, over-exposed, washed out, blurred), the classifiers still report their scores
but their reasons are not raised (`suppressed` in the record): their inputs cannot be trusted.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from kiosk.config import IcaoConfig, TokenConfig
from kiosk.contract.reasons import CHECK_ERROR, by_urgency
from kiosk.runtime.checks.background import BackgroundPlain, BackgroundUniform
from kiosk.runtime.checks.base import Check, CheckResult
from kiosk.runtime.checks.exposure import DynamicRange, OverExposure, UnderExposure
from kiosk.runtime.checks.eyes_closed import EyesClosed
from kiosk.runtime.checks.framing import Framing
from kiosk.runtime.checks.headwear import HeadCovering
from kiosk.runtime.checks.illumination import IlluminationUniformity
from kiosk.runtime.checks.mouth_open import MouthOpen
from kiosk.runtime.checks.pose import HeadPose
from kiosk.runtime.checks.resolution import Resolution
from kiosk.runtime.checks.sharpness import Focus, MotionBlur
from kiosk.runtime.checks.veil import Veil
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.analysis import Analysis

log = logging.getLogger(__name__)

# Name -> factory, in the order results are reported.
PLUGINS: dict[str, Callable[[ModelRegistry, int], Check]] = {
    EyesClosed.spec.name: EyesClosed,
    MouthOpen.spec.name: MouthOpen,
    Veil.spec.name: Veil,
}
MEASURES: dict[str, Callable[[IcaoConfig, TokenConfig], Check]] = {
    check.name: check
    for check in (
        UnderExposure,
        OverExposure,
        DynamicRange,
        Focus,
        MotionBlur,
        Framing,
        Resolution,
        HeadPose,
        IlluminationUniformity,
        HeadCovering,
        BackgroundPlain,
        BackgroundUniform,
    )
}


class ComplianceChecks:
    """Every plugin, built once (classifiers from a verified bundle, measures from the `[icao]`
    limits), run on each face that passed the gates."""

    def __init__(
        self,
        registry: ModelRegistry,
        num_threads: int = 1,
        limits: IcaoConfig | None = None,
        token: TokenConfig | None = None,
    ) -> None:
        limits = limits if limits is not None else IcaoConfig()
        token = token if token is not None else TokenConfig()
        self.checks = [factory(registry, num_threads) for factory in PLUGINS.values()]
        self.checks += [factory(limits, token) for factory in MEASURES.values()]

    def run(self, analysis: Analysis) -> dict[str, CheckResult]:
        results = {}
        for check in self.checks:
            try:
                results[check.name] = check(analysis)
            except Exception as exc:  # one check's fault must not take the frame or the others
                log.exception("check %s failed to run", check.name)
                results[check.name] = CheckResult.errored(
                    check.threshold, f"{type(exc).__name__}: {exc}"
                )
        if any(results[c.name].failed and not results[c.name].error for c in self._quality()):
            for check in self.checks:
                if check.suppressible:
                    results[check.name] = dataclasses.replace(results[check.name], suppressed=True)
        return results

    def reasons(self, results: dict[str, CheckResult]) -> list[str]:
        """Reason codes of the failed checks, most urgent first, each once; `check_error` once if
        any errored; none from a suppressed verdict."""
        failed = [
            results[c.name].reason or c.reason
            for c in self.checks
            if results[c.name].failed
            and not results[c.name].error
            and not results[c.name].suppressed
        ]
        if any(result.error for result in results.values()):
            failed.append(CHECK_ERROR)
        return by_urgency(failed)

    def _quality(self) -> list[Check]:
        return [c for c in self.checks if c.quality]
