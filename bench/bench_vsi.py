"""Speed of the visual security index, and its peak memory on camera-sized frames.

The acceptance targets are a 512x512 pair in <= 2 s on the development machine (2 CPU cores,
shared) and <= 500 MB peak RSS for a 12 MP pair. Prints one table row per configuration (size,
edge filter, search stride; the index is computed at native size here), then one row per camera
frame size with the peak RSS and time of a fresh process scoring one pair with the defaults
(normalised to VsiParams.size) and, up to --native-max width, at native size.

Run:  .venv/bin/python bench/bench_vsi.py [--repeat 5] [--native-max 1920]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import cv2
import numpy as np
from skimage import data

from kiosk.runtime.privacy.encryption import encrypt
from kiosk.runtime.privacy.vsi import VsiParams, block_side, visual_security_index

NATIVE = VsiParams(size=None)
CONFIGS = (
    (256, NATIVE),
    (512, NATIVE),
    (512, VsiParams(edge_filter="steerable", size=None)),
    (512, VsiParams(search_stride=0.5, size=None)),
    (1024, NATIVE),
)
FRAME_SIZES = ((640, 480), (1920, 1080), (4000, 3000))


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


def measure_frame(width: int, height: int, native: bool) -> dict[str, float]:
    """Peak RSS (MB, whole process) and seconds for one pair; run in a fresh process."""
    plain = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_LINEAR)
    encrypted = encrypt(plain, bytes(32), "xor", 5, nonce=bytes(16)).pixels
    started = time.perf_counter()
    visual_security_index(plain, encrypted, NATIVE if native else VsiParams())
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"peak_mb": peak, "seconds": elapsed}


def frame_rows(native_max: int) -> None:
    print("\n| frame | scored at | peak RSS MB | s |")
    print("|---|---|---|---|")
    for width, height in FRAME_SIZES:
        for native in (False, True):
            if native and width > native_max:
                continue
            command = [sys.executable, __file__, "--frame", f"{width}x{height}"]
            output = subprocess.run(
                [*command, *(["--native"] if native else [])],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row = json.loads(output)
            side = "native" if native else f"{VsiParams().size} px shorter side"
            print(f"| {width}x{height} | {side} | {row['peak_mb']:.0f} | {row['seconds']:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--native-max", type=int, default=1920, help="widest native frame")
    parser.add_argument("--frame", help=argparse.SUPPRESS)  # WxH: measure one pair (subprocess)
    parser.add_argument("--native", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.frame:
        width, height = (int(v) for v in args.frame.split("x"))
        print(json.dumps(measure_frame(width, height, args.native)))
        return 0
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
    frame_rows(args.native_max)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
