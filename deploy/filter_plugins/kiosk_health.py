"""The deploy health gate: does a kiosk's ``GET /health`` body show it running this bundle?

It judges the bundle, not the kiosk: the model checks must have loaded (``checks.ok``), the
service must report this bundle's version, and it must report every model of the bundle with the
bundle's sha256 and no other. The camera is ignored on purpose: an unplugged camera is a fault of
the kiosk, and rolling back a good bundle would not fix it. Plain Python so tests call it directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any


def kiosk_health_problem(stdout: str, version: str, models: Mapping[str, str] | None = None) -> str:
    """Why the health output ``stdout`` fails the gate for bundle ``version``; "" when it passes.

    ``models`` maps model name -> sha256 of the bundle; ``None`` skips the model comparison
    (a rollback target's hashes are not known on the engineer's machine).
    """
    try:
        report = json.loads(stdout)
    except (TypeError, ValueError):
        return f"health output is not JSON: {str(stdout)[:120]!r}"
    if not isinstance(report, dict):
        return "health output is not a JSON object"
    checks = report.get("checks")
    if not isinstance(checks, dict):
        return "health report has no 'checks' object: is the kiosk running the current service?"
    if checks.get("ok") is not True:
        return f"model checks not loaded: {checks.get('error') or 'no reason given'}"
    if report.get("bundle") != version:
        return f"service reports bundle {report.get('bundle')!r}, expected {version!r}"
    if models is None:
        return ""
    reported = report.get("models")
    if not isinstance(reported, dict):
        return "health report has no 'models' object"
    missing = sorted(set(models) - set(reported))
    extra = sorted(set(reported) - set(models))
    wrong = sorted(name for name in set(models) & set(reported) if reported[name] != models[name])
    problems = [
        f"{label}: {', '.join(names)}"
        for label, names in (
            ("models not reported", missing),
            ("models not in the bundle", extra),
            ("models with another sha256", wrong),
        )
        if names
    ]
    return "; ".join(problems)


class FilterModule:
    """Ansible's entry point for filter plugins."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"kiosk_health_problem": kiosk_health_problem}
