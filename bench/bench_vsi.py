"""Speed of the visual security index: one plain/encrypted pair per size, median of a few runs.

The acceptance target is a 512x512 pair in <= 2 s on the development machine (2 CPU cores,
shared). Prints one table row per configuration (size, edge filter, search stride).

Run:  .venv/bin/python bench/bench_vsi.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import cv2
import numpy as np
from skimage import data

from kiosk.privacy.encryption import encrypt
from kiosk.privacy.vsi import VsiParams, block_side, visual_security_index

CONFIGS = (
    (256, VsiParams()),
    (512, VsiParams()),
    (512, VsiParams(edge_filter="steerable")),
    (512, VsiParams(search_stride=0.5)),
    (1024, VsiParams()),
)


def time_pair(size: int, params: VsiParams, repeat: int) -> tuple[float, float, int]:
    plain = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    encrypted = encrypt(plain, bytes(32), "block_shuffle", 3, nonce=bytes(16)).pixels
    visual_security_index(plain, encrypted, params)  # warm caches (filter banks, FFT plans)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = visual_security_index(plain, encrypted, params)
        times.append(time.perf_counter() - started)
    return float(np.median(times)), float(min(times)), result.block_rd.size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}")
    print("| size | edge filter | search stride | block | blocks | median s | best s |")
    print("|---|---|---|---|---|---|---|")
    for size, params in CONFIGS:
        median, best, blocks = time_pair(size, params, args.repeat)
        side = block_side(size, size, params.alpha)
        print(
            f"| {size}x{size} | {params.edge_filter} | {params.search_stride:g} l | {side} px "
            f"| {blocks} | {median:.3f} | {best:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
