"""Peak memory (RSS) of `kiosk check` and `kiosk forensics` per input size and format, and the
RSS of one `kiosk check` over a long stream of camera frames.

    .venv/bin/python bench/bench_memory.py            # this tree
    .venv/bin/python bench/bench_memory.py --root DIR # another checkout, e.g. `git archive` of an
                                                      # older commit, for before/after tables
    .venv/bin/python bench/bench_memory.py --stream 10000 [--config FILE]

`--stream N`: one `kiosk check --json` process reads N video frames (`--stream-size`, default
camera-sized 1920x1080): a 500-frame clip of the test face drifting and swaying (as an applicant settles), passed
N/500 times, so every pass re-detects from scratch and then tracks. Its RSS (VmRSS from
/proc) is read when the 100th and the Nth frame's record arrive; the peak is VmHWM.

Each case runs in its own process (`python -m kiosk ...`); its peak RSS is the kernel's ru_maxrss
for that process (os.wait4). Linux carries a process's high-water mark across fork and exec, so the
inputs are made in a separate process and the bench itself never holds a big image. The inputs
are the test face (tests/data/face_open.jpg) on a grey frame, resized to each size, with mild noise
so that PNGs compress like photos. The docs/input.md table was made with this script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIZES = {
    "640x480": (640, 480),
    "1920x1080": (1920, 1080),
    "1280x960": (1280, 960),
    "12 MP": (4000, 3000),
    "49.9 MP": (8160, 6112),
}
FORMATS = ("jpg", "png")
COMMANDS = ("check", "forensics")


def make_input(path: Path, size: tuple[int, int], share: float = 1 / 3) -> None:
    """The test face, `share` of the frame height (a third: the tables), on grey with noise
    (sigma 3)."""
    import cv2  # here, not at the top: the measuring process must stay small
    import numpy as np

    width, height = size
    face = cv2.imread(str(REPO / "tests" / "data" / "face_open.jpg"))
    side = round(height * share)
    frame = np.full((height, width, 3), 128, np.uint8)
    face = cv2.resize(face, (side * face.shape[1] // face.shape[0], side))
    top, left = (height - side) // 2, (width - face.shape[1]) // 2
    frame[top : top + face.shape[0], left : left + face.shape[1]] = face
    noise = np.empty_like(frame)
    cv2.randn(noise, 0, 3)
    frame = cv2.add(frame, noise)  # saturating; the noise is only there for compressibility
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if path.suffix == ".jpg" else []
    cv2.imwrite(str(path), frame, params)


def make_clip(path: Path, frames: int, size: tuple[int, int]) -> None:
    """`frames` frames of make_input's photo, the face half the frame height (at 640x480 a
    third would be under [gates] min_face_px), drifting a few px and swaying 2 % in scale."""
    import cv2
    import numpy as np

    width, height = size
    still = path.with_suffix(".png")
    make_input(still, size, share=1 / 2)
    frame = cv2.imread(str(still))
    still.unlink()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for index in range(frames):
        phase = 2 * np.pi * index / frames
        scale = 1 + 0.02 * np.sin(3 * phase)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0, scale)
        matrix[:, 2] += (12 * np.sin(phase), 6 * np.sin(2 * phase))
        writer.write(cv2.warpAffine(frame, matrix, size, borderMode=cv2.BORDER_REPLICATE))
    writer.release()


def _status_mib(pid: int, key: str) -> float:
    """A VmRSS/VmHWM line of /proc/PID/status, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def stream_rss(
    root: Path, frames: int, size: str, config: Path | None, clip_frames: int = 500
) -> None:
    """RSS of one `kiosk check` after 100 and after `frames` frames of a `size` clip."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make = [
            sys.executable,
            __file__,
            "--make-clip",
            str(clip),
            str(clip_frames),
            *map(str, SIZES[size]),
        ]
        subprocess.run(make, check=True)
        passes = -(-frames // clip_frames)
        argv = [sys.executable, "-m", "kiosk", *(["--config", str(config)] if config else [])]
        argv += ["check", "--json", *[str(clip)] * passes]
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert process.stdout is not None
        seen, rss, peak, decisions, reasons = 0, {}, 0.0, Counter(), Counter()
        for line in process.stdout:
            record = json.loads(line)
            if "summary" in record:
                break
            seen += 1
            decisions[record["decision"]] += 1
            reasons.update(record["reasons"])
            current, peak = _status_mib(process.pid, "VmRSS"), _status_mib(process.pid, "VmHWM")
            if seen in (100, 1000, 5000):
                rss[seen] = current
            if seen >= frames:
                break
        rss[seen] = current
        process.kill()
        process.wait()
        seconds = time.perf_counter() - start
    print(f"root {root}; one `kiosk check --json` over {seen} {size} video frames")
    print("| frames read | RSS MiB |\n|---:|---:|")
    for count, mib in rss.items():
        print(f"| {count} | {mib:.1f} |")
    print(
        f"\ngrowth from frame 100 to {seen}: {rss[seen] - rss[100]:+.1f} MiB; peak (VmHWM) "
        f"{peak:.0f} MiB; {seen / seconds:.0f} frames/s wall; decisions {dict(decisions)}; "
        f"reasons {dict(reasons.most_common(4))}"
    )


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
    parser.add_argument("--stream", type=int, metavar="N", help="RSS over N video frames")
    parser.add_argument("--stream-size", default="1920x1080", choices=list(SIZES))
    parser.add_argument("--config", type=Path, help="config for the --stream run")
    parser.add_argument("--make", nargs=3, metavar=("PATH", "W", "H"), help=argparse.SUPPRESS)
    parser.add_argument("--make-clip", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        make_input(Path(args.make[0]), (int(args.make[1]), int(args.make[2])))
        return
    if args.make_clip:
        path, frames, width, height = args.make_clip
        make_clip(Path(path), int(frames), (int(width), int(height)))
        return
    root = args.root.resolve()
    if args.stream:
        config = args.config.resolve() if args.config else None
        stream_rss(root, args.stream, args.stream_size, config)
        return
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
