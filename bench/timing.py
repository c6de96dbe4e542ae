"""Shared timing for the benchmarks: median wall time of repeated calls after one warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def median_ms(function: Callable[[], object], runs: int) -> float:
    function()  # warm-up: first calls allocate tensors and fill caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)
