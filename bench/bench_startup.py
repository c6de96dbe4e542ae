"""Start-up of `kiosk check` on one photo, hyperfine-style: repeated fresh processes, one table.

    .venv/bin/python bench/bench_startup.py [--runs 10]

Rows: `kiosk --help` (the parser alone), `import kiosk.cli`, and `kiosk check --json` on one
640x480 test photo (tests/data/face_open.jpg on grey), each a new `python -m kiosk` process with
one thread. Columns: wall time (median, min) and CPU time (user + sys of the child, median):
on this shared 2-core host wall time waits for other sessions, CPU time does not. Also the
seconds of the heaviest imports, from `python -X importtime`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def timed_run(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def photo(folder: Path) -> Path:
    import cv2

    face = cv2.imread(str(REPO / "tests" / "data" / "face_open.jpg"))
    canvas = np.full((480, 640, 3), 128, np.uint8)
    scale = 400 / face.shape[0]
    face = cv2.resize(face, None, fx=scale, fy=scale)[:480, :640]
    y, x = (480 - face.shape[0]) // 2, (640 - face.shape[1]) // 2
    canvas[y : y + face.shape[0], x : x + face.shape[1]] = face
    path = folder / "photo.jpg"
    cv2.imwrite(str(path), canvas)
    return path


def heaviest_imports(count: int = 6) -> list[tuple[str, float]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import kiosk.cli"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].rstrip(), int(parts[1]) / 1e6))
    return sorted(rows, key=lambda row: -row[1])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    kiosk = [sys.executable, "-m", "kiosk"]
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "`kiosk --help`": [*kiosk, "--help"],
            "`import kiosk.cli`": [sys.executable, "-c", "import kiosk.cli"],
            "`kiosk check --json photo.jpg` (640x480)": [
                *kiosk,
                "check",
                "--json",
                str(photo(Path(tmp))),
            ],
        }
        print(f"{args.runs} runs each, load average {os.getloadavg()[0]:.1f}\n")
        print("| command | wall median s | wall min s | CPU median s |\n|---|---|---|---|")
        for name, command in cases.items():
            timed_run(command)  # warm the page cache
            runs = np.array([timed_run(command) for _ in range(args.runs)])
            print(
                f"| {name} | {np.median(runs[:, 0]):.3f} | {runs[:, 0].min():.3f} | "
                f"{np.median(runs[:, 1]):.3f} |"
            )
    print("\nheaviest imports of `import kiosk.cli` (cumulative s):")
    for name, seconds in heaviest_imports():
        print(f"  {seconds:.3f} {name}")


if __name__ == "__main__":
    main()
