"""Video rate with and without tracking, and whether tracking keeps the verdicts.

    .venv/bin/python bench/bench_video.py [--frames-per-face 60] [--faces 6]

The clip: each test face (the astronaut, then faces68/ HELEN photos, as in bench_pipeline.py)
placed on a 640x480 canvas and moved slowly (a 1-2 px per frame drift with a 2 % zoom sway, sub-
pixel, as an applicant settles in front of the camera), one segment per face with hard cuts
between them and a few empty frames (the applicant steps away). Both paths see the same frames,
one thread: the stateless `CompliancePipeline.check` (detection on every frame) and
`TrackingPipeline.check`. Prints fps, how often and why tracking re-detected, how often checks
were reused, and the verdict agreement (decision and reasons, per frame).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from bench_pipeline import kiosk_frames  # noqa: E402

from kiosk.config import load_config  # noqa: E402
from kiosk.contract.reasons import HEAD_PITCHED, HEAD_TILTED, HEAD_TURNED  # noqa: E402
from kiosk.runtime.pipeline import CompliancePipeline, TrackingPipeline  # noqa: E402


def drift(frame: np.ndarray, t: float) -> np.ndarray:
    """`frame` moved by a slow sub-pixel drift and zoom sway at time `t` (frames)."""
    dx, dy = 25 * np.sin(t / 30), 10 * np.sin(t / 23)
    zoom = 1 + 0.02 * np.sin(t / 40)
    matrix = cv2.getRotationMatrix2D((320, 240), 0.0, zoom)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(frame, matrix, (640, 480), borderMode=cv2.BORDER_REPLICATE)


def clip(faces: list[np.ndarray], per_face: int, empty: int = 5) -> list[np.ndarray]:
    """One slow segment per face canvas, `empty` grey frames after each."""
    blank = np.full((480, 640, 3), 120, np.uint8)
    frames = []
    for canvas in faces:
        frames += [drift(canvas, t) for t in range(per_face)]
        frames += [blank] * empty
    return frames


def agreement(reference: list, tracked: list) -> float:
    same = sum(
        a.decision == b.decision and a.reasons == b.reasons
        for a, b in zip(reference, tracked, strict=True)
    )
    return same / len(reference)


def stable_agreement(reference: list, tracked: list) -> tuple[float, int]:
    """Agreement on the frames where per-frame detection's verdict equals both neighbours'
    (its own box jitter does not flip it), and how many frames those are."""
    keys = [(v.decision, v.reasons) for v in reference]
    stable = [i for i in range(1, len(keys) - 1) if keys[i - 1] == keys[i] == keys[i + 1]]
    same = sum(keys[i] == (tracked[i].decision, tracked[i].reasons) for i in stable)
    return same / max(len(stable), 1), len(stable)


def run(pipeline, frames: list[np.ndarray]) -> tuple[list, float]:
    verdicts = []
    start = time.perf_counter()
    for frame in frames:
        verdicts.append(pipeline.check(frame)[0])
    return verdicts, (time.perf_counter() - start) / len(frames) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames-per-face", type=int, default=60)
    parser.add_argument("--faces", type=int, default=6)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    config = load_config()
    base = CompliancePipeline(config)
    frames = clip(kiosk_frames()[: args.faces], args.frames_per_face)
    base.check(frames[0])
    reference, ms_base = run(base, frames)
    tracking = TrackingPipeline(base, config.tracking)
    tracked, ms_tracked = run(tracking, frames)
    stats = tracking.stats
    load = os.getloadavg()[0]
    print(f"{len(frames)} frames 640x480, 1 thread, load average {load:.1f}\n")
    print("| path | ms / frame (mean) | fps |\n|---|---|---|")
    print(
        f"| detection every frame (`CompliancePipeline.check`) | {ms_base:.2f} | {1000 / ms_base:.0f} |"
    )
    print(f"| tracking (`TrackingPipeline.check`) | {ms_tracked:.2f} | {1000 / ms_tracked:.0f} |")
    detections = sum(stats.detections.values())
    why = ", ".join(f"{k} {v}" for k, v in stats.detections.most_common())
    print(
        f"\ndetector ran on {detections} of {stats.frames} frames ({stats.detection_rate:.1%}: "
        f"{why}); tracked {stats.tracked}; gate verdict reused on {stats.reused_gate}"
    )
    runs = stats.check_runs + stats.check_reuses
    print(
        f"check results reused {stats.check_reuses} of {runs} ({stats.check_reuses / max(runs, 1):.1%})"
    )
    print(f"verdict agreement (decision + reasons): {agreement(reference, tracked):.2%}")
    share, count = stable_agreement(reference, tracked)
    print(f"verdict agreement where per-frame detection is stable ({count} frames): {share:.2%}")
    print(
        "verdict changes between consecutive frames: per-frame detection "
        f"{1 - agreement(reference[1:], reference[:-1]):.2%}, tracking "
        f"{1 - agreement(tracked[1:], tracked[:-1]):.2%} (cuts included)"
    )
    flips: Counter[str] = Counter()
    for a, b in zip(reference, tracked, strict=True):
        flips.update(set(a.reasons) ^ set(b.reasons))
    print(
        "frames where a reason is on one path only: "
        + ", ".join(f"{reason} {count}" for reason, count in flips.most_common())
    )
    pose = {HEAD_TURNED, HEAD_PITCHED, HEAD_TILTED}
    same = sum(
        a.decision == b.decision
        and [r for r in a.reasons if r not in pose] == [r for r in b.reasons if r not in pose]
        for a, b in zip(reference, tracked, strict=True)
    )
    print(f"verdict agreement leaving head pose out: {same / len(frames):.2%}")


if __name__ == "__main__":
    main()
