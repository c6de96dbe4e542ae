"""Compliance checks as plugins: one module per check, listed in `PLUGINS`, run by
`ComplianceChecks`. Adding a check is one module here, one spec (kiosk/contract/) and one test.

Each check runs isolated: an exception in one becomes that check's error (it fails, reason
`check_error`), the other checks still report, and the frame is not lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kiosk.contract.reasons import CHECK_ERROR
from kiosk.runtime.checks.base import Check, CheckResult
from kiosk.runtime.checks.eyes_closed import EyesClosed
from kiosk.runtime.checks.mouth_open import MouthOpen
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


class ComplianceChecks:
    """Every plugin, built once from a verified bundle, run on each face that passed the gates."""

    def __init__(self, registry: ModelRegistry, num_threads: int = 1) -> None:
        self.checks = [factory(registry, num_threads) for factory in PLUGINS.values()]

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
        return results

    def reasons(self, results: dict[str, CheckResult]) -> list[str]:
        """Reason codes of the failed checks, in plugin order; `check_error` once if any errored."""
        failed = [
            c.reason for c in self.checks if results[c.name].failed and not results[c.name].error
        ]
        if any(result.error for result in results.values()):
            failed.append(CHECK_ERROR)
        return failed
