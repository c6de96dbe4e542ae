"""Peak memory (RSS) of `kiosk check` and `kiosk forensics` per input size and format.

    .venv/bin/python bench/bench_memory.py            # this tree
    .venv/bin/python bench/bench_memory.py --root DIR # another checkout, e.g. `git archive` of an
                                                      # older commit, for before/after tables

Each case runs in its own process (`python -m kiosk ...`); its peak RSS is the kernel's ru_maxrss
for that process (os.wait4). Linux carries a process's high-water mark across fork and exec, so the
inputs are made in a separate process and the bench itself never holds a big image. The inputs
are the test face (tests/data/face_open.jpg) on a grey frame, resized to each size, with mild noise
so that PNGs compress like photos. The docs/input.md table was made with this script.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIZES = {
    "640x480": (640, 480),
    "1280x960": (1280, 960),
    "12 MP": (4000, 3000),
    "49.9 MP": (8160, 6112),
}
FORMATS = ("jpg", "png")
COMMANDS = ("check", "forensics")


def make_input(path: Path, size: tuple[int, int]) -> None:
    """The test face, about a third of the frame height, on grey with noise (sigma 3)."""
    import cv2  # here, not at the top: the measuring process must stay small
    import numpy as np

    width, height = size
    face = cv2.imread(str(REPO / "tests" / "data" / "face_open.jpg"))
    side = height // 3
    frame = np.full((height, width, 3), 128, np.uint8)
    face = cv2.resize(face, (side * face.shape[1] // face.shape[0], side))
    top, left = height // 3, (width - face.shape[1]) // 2
    frame[top : top + face.shape[0], left : left + face.shape[1]] = face
    noise = np.empty_like(frame)
    cv2.randn(noise, 0, 3)
    frame = cv2.add(frame, noise)  # saturating; the noise is only there for compressibility
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if path.suffix == ".jpg" else []
    cv2.imwrite(str(path), frame, params)


def peak_rss_mb(argv: list[str], cwd: Path, timeout_s: float) -> tuple[float, int, float]:
    """(peak RSS in MiB, exit code, seconds) of one command run to completion."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = start + timeout_s
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024.0, process.returncode, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO, help="project checkout to measure")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("--make", nargs=3, metavar=("PATH", "W", "H"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        make_input(Path(args.make[0]), (int(args.make[1]), int(args.make[2])))
        return
    root = args.root.resolve()
    print(f"root {root}; peak RSS (MiB), exit code, seconds per case")
    print("| input | format | command | peak RSS MiB | exit | s |")
    print("|---|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.sizes:
            for fmt in args.formats:
                path = Path(tmp) / f"input_{SIZES[label][0]}x{SIZES[label][1]}.{fmt}"
                width, height = SIZES[label]
                make = [sys.executable, __file__, "--make", str(path), str(width), str(height)]
                subprocess.run(make, check=True)
                for command in args.commands:
                    argv = [sys.executable, "-m", "kiosk", command, "--json", str(path)]
                    rss, code, seconds = peak_rss_mb(argv, root, args.timeout)
                    print(f"| {label} | {fmt} | {command} | {rss:.0f} | {code} | {seconds:.1f} |")
                    sys.stdout.flush()
                path.unlink()


if __name__ == "__main__":
    main()
