"""The one latency helper of the project: training reports and bench/ scripts time with it, so
their numbers are measured the same way (median wall time after warm-up calls)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def median_ms(function: Callable[[], object], runs: int, warmup: int = 1) -> float:
    """Median milliseconds of `runs` calls of `function`, after `warmup` untimed calls (first
    calls allocate tensors and fill caches)."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)
