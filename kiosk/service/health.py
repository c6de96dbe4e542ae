"""/health from plain facts: 503 when no photo can be taken or kept.

That is when the checks cannot run, every frame fails, the loop is stuck, or the store is
unavailable or refuses captures. A camera that is unplugged only degrades the service (200): a
deploy must not roll a good bundle back because of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiosk.service.bundle import Checks

FAILING_FRAMES = 10  # consecutive frames that could not be checked before /health says 503


@dataclass(frozen=True)
class HealthFacts:
    """What the service knows at one moment (gathered by KioskService.health)."""

    checks: Checks | None
    checks_error: str
    reload_error: str
    failing_frames: int  # consecutive frames the pipeline could not check
    loop_age_s: float
    stall_s: float
    camera: dict[str, Any]  # CameraFeed.status()
    state: str
    store_down: bool
    store_problems: list[str]


def assess(facts: HealthFacts) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /health."""
    checks = facts.checks
    stalled = facts.loop_age_s > facts.stall_s
    failing = facts.failing_frames >= FAILING_FRAMES
    problems = []
    if checks is None:
        problems.append(f"checks unavailable: {facts.checks_error}")
    if failing:
        problems.append(f"the last {facts.failing_frames} frames could not be checked")
    if stalled:
        problems.append(f"service loop stalled for {facts.loop_age_s:.0f} s")
    if not facts.camera["ok"]:
        problems.append(f"camera unavailable: {facts.camera['message']}")
    if facts.reload_error:
        problems.append(f"last reload failed, previous bundle kept: {facts.reload_error}")
    problems.extend(facts.store_problems)
    body = {
        "status": "ok" if not problems else "degraded",
        "models": checks.models if checks else {},
        "bundle": checks.bundle if checks else None,
        "signature": checks.signature if checks else None,
        # What a deploy judges a bundle by: "status" also covers the camera and the store.
        "checks": {
            "ok": checks is not None and not facts.reload_error and not failing,
            "error": facts.checks_error
            or facts.reload_error
            or (f"{facts.failing_frames} frames in a row failed" if failing else ""),
        },
        "camera": facts.camera,
        "state": facts.state,
        "problems": problems,
    }
    unhealthy = checks is None or stalled or failing or facts.store_down
    return (503 if unhealthy else 200), body
