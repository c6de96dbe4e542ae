"""Start-up of `kiosk check` on one photo, hyperfine-style: repeated fresh processes, one table.

    .venv/bin/python bench/bench_startup.py [--runs 10] [--config FILE] [--reference DIR]

Rows: `kiosk --help` (the parser), the config alone (import and load: the validator's cost
beside a bare interpreter), the imports `kiosk check` makes before it reads a photo, and
`kiosk check --json` on a 640x480 photo and on a camera-sized 1920x1080 photo (the test face,
tests/data/face_open.jpg, 5/6 of the frame height on grey: every check runs), and on a 640x480
grey photo without a face (YuNet finds none, so the BlazeFace fallback is built and run: the
start-up it costs there and nowhere else). Each run is a new
`python -m kiosk` process with one thread. Columns: wall time (median, min), CPU time (user +
sys of the child, median) and the child's peak RSS (ru_maxrss from os.wait4, largest run): on
this shared 2-core host wall time waits for other sessions, CPU time does not.

`--rows TEXT` keeps the rows whose label contains TEXT (e.g. `--rows check`).
`--reference DIR` runs the same rows from another checkout in the same run, e.g. the previous
release: `git worktree add /tmp/prev COMMIT` (remove it with `git worktree remove /tmp/prev`).
`--config FILE` is passed to every `kiosk check`, ours and the reference's (default: each
checkout's own firmware_config/kiosk.toml).

Bytecode is cached as an installed package has it (pip compiles it at install): this host sets
PYTHONDONTWRITEBYTECODE=1, which would make every start compile the kiosk's modules again
(~0.1 s), so the children write their .pyc files to a temporary PYTHONPYCACHEPREFIX and each
case is run once unmeasured first. The bench process itself imports neither numpy nor OpenCV:
Linux carries a parent's RSS into a forked child's ru_maxrss, so the photos are made in a
separate process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# label: (width, height, with the face)
PHOTOS = {
    "640x480": (640, 480, True),
    "1920x1080": (1920, 1080, True),
    "640x480 no face": (640, 480, False),
}
# What `kiosk check` imports before it reads a photo (kiosk/cli/__init__.py: cmd_check).
CHECK_IMPORTS = (
    "import kiosk.cli, kiosk.config, kiosk.runtime.annotate, kiosk.runtime.cameras.sources, "
    "kiosk.runtime.pipeline"
)
CONFIG_LOAD = "import kiosk.config; kiosk.config.load_config()"


def make_photo(path: Path, size: tuple[int, int], with_face: bool = True) -> None:
    """The test face at 5/6 of the frame height, centred on grey, or the grey alone (run in its
    own process)."""
    import cv2
    import numpy as np

    width, height = size
    canvas = np.full((height, width, 3), 128, np.uint8)
    if with_face:
        face = cv2.imread(str(REPO / "tests" / "data" / "face_open.jpg"))
        scale = height * 5 / 6 / face.shape[0]
        face = cv2.resize(face, None, fx=scale, fy=scale)[:height, :width]
        y, x = (height - face.shape[0]) // 2, (width - face.shape[1]) // 2
        canvas[y : y + face.shape[0], x : x + face.shape[1]] = face
    cv2.imwrite(str(path), canvas)


def child_env(root: Path, pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {
        **env,
        "OMP_NUM_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(root),
        "PYTHONPYCACHEPREFIX": str(pycache),
        # A reference tree from before issue 16 validated with pydantic, whose `kiosk` turned off
        # its plugin search (~12 ms); the config row of such a tree needs the same.
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }


def timed_run(argv: list[str], root: Path, env: dict[str, str]) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MiB, exit code) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode


def cases(photos: dict[str, Path], config: Path | None) -> dict[str, list[str]]:
    kiosk = [sys.executable, "-m", "kiosk", *(["--config", str(config)] if config else [])]
    rows = {
        "`kiosk --help`": [*kiosk, "--help"],
        "bare interpreter": [sys.executable, "-c", "pass"],
        "config import + load": [sys.executable, "-c", CONFIG_LOAD],
        "imports of `kiosk check`": [sys.executable, "-c", CHECK_IMPORTS],
    }
    for label, path in photos.items():
        rows[f"`kiosk check --json` {label}"] = [*kiosk, "check", "--json", str(path)]
    return rows


def heaviest_imports(root: Path, env: dict[str, str], count: int = 8) -> list[tuple[str, float]]:
    """The modules with the largest self time among the imports of `kiosk check`."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CHECK_IMPORTS],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0].split(":")[-1].strip().isdigit():
            rows.append((parts[2].strip(), int(parts[0].split(":")[-1]) / 1e6))
    return sorted(rows, key=lambda row: -row[1])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--config", type=Path, help="config for every `kiosk check` run")
    parser.add_argument("--reference", type=Path, help="another checkout, measured beside ours")
    parser.add_argument("--rows", default="", help="only the rows whose label contains this")
    parser.add_argument(
        "--make", nargs=4, metavar=("PATH", "W", "H", "FACE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.make:
        path, width, height, face = args.make
        make_photo(Path(path), (int(width), int(height)), face == "face")
        return
    roots = {"ours": REPO} | ({"reference": args.reference.resolve()} if args.reference else {})
    config = args.config.resolve() if args.config else None
    with tempfile.TemporaryDirectory() as tmp:
        photos = {}
        for label, (width, height, with_face) in PHOTOS.items():
            photos[label] = Path(tmp) / f"photo_{label.replace(' ', '_')}.jpg"
            face = "face" if with_face else "none"
            make = [sys.executable, __file__, "--make", str(photos[label]), str(width), str(height)]
            subprocess.run([*make, face], check=True)
        print(
            f"{args.runs} runs each, load average {os.getloadavg()[0]:.1f}, config "
            f"{config or 'each checkout own firmware_config/kiosk.toml'}\n"
        )
        print(
            "| command | tree | wall median s | wall min s | CPU median s | peak RSS MiB | exit |"
        )
        print("|---|---|---:|---:|---:|---:|---:|")
        envs = {name: child_env(root, Path(tmp) / f"pyc_{name}") for name, root in roots.items()}
        for name, command in cases(photos, config).items():
            if args.rows not in name:
                continue
            for tree, root in roots.items():
                timed_run(command, root, envs[tree])  # compiles the bytecode, warms the cache
            # The trees take turns, run by run, so that both see the same changes of load.
            results: dict[str, list[tuple[float, float, float, int]]] = {tree: [] for tree in roots}
            for _ in range(args.runs):
                for tree, root in roots.items():
                    results[tree].append(timed_run(command, root, envs[tree]))
            for tree, runs in results.items():
                walls = [run[0] for run in runs]
                print(
                    f"| {name} | {tree} | {statistics.median(walls):.3f} | {min(walls):.3f} | "
                    f"{statistics.median(run[1] for run in runs):.3f} | "
                    f"{max(run[2] for run in runs):.0f} | {runs[-1][3]} |"
                )
                sys.stdout.flush()
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
        print("\nlargest self times among the imports of `kiosk check` (ours, s):")
        for module, seconds in heaviest_imports(REPO, envs["ours"]):
            print(f"  {seconds:.3f} {module}")


if __name__ == "__main__":
    main()
