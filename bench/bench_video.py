"""Video rate with and without tracking, and how far tracking keeps the per-frame verdicts.

    .venv/bin/python bench/bench_video.py [--frames-per-face 60] [--faces 6] [--config FILE]
        [--set KEY=VALUE ...] [--no-repeatability] [--one-fit] [--fits]

The clip: each test face (the astronaut, then faces68/ HELEN photos, as in bench_pipeline.py)
placed on a 640x480 canvas and moved slowly (a 1-2 px per frame drift with a 2 % zoom sway, sub-
pixel, as an applicant settles in front of the camera), one segment per face with hard cuts
between them and a few empty frames (the applicant steps away). Both paths see the same frames,
one thread, timed frame by frame in one loop (so both share the host's load): the stateless
`CompliancePipeline.check` (detection on every frame) and `TrackingPipeline.check`.

Agreement is bounded by the reference itself: the per-frame path is run again on every frame
moved by one whole pixel (the same pixels, translated), and its agreement with itself is the
most any other method can be expected to reach. Tracked agreement is split into the frames
where that repeat gives the reference's verdict ("repeatable") and the rest. `--set` overrides
a [tracking] setting (e.g. `--set max_crop_change=0 --set rescore_every=1`: landmarks and every
check recomputed on every tracked frame, only the detector skipped). `--one-fit` makes every
landmark fit one dlib fit from the box as it is (as before the fit became the mean of the
`FIT_OFFSETS` fits, kiosk.runtime.vision.landmarks), to compare the verdicts' repeatability;
`--fits` prints only how far one fit and the averaged fit follow the detector's jitter.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench.frames import clip, kiosk_frames  # noqa: E402
from kiosk.config import load_config  # noqa: E402
from kiosk.runtime.checks.pose import head_pose  # noqa: E402
from kiosk.runtime.pipeline import CompliancePipeline, TrackingPipeline, Verdict  # noqa: E402
from kiosk.runtime.vision import landmarks  # noqa: E402
from kiosk.runtime.vision.analysis import Analysis  # noqa: E402
from kiosk.service.state import Smoother  # noqa: E402

# Whole-pixel moves: the frame's own pixels, translated (no interpolation).
REPEAT_MOVES = ((1, 0), (0, 1))
RIGHT = np.array([1, 0], np.float32)  # the first move, as a vector


def moved(frame: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """`frame` translated by whole pixels, the uncovered edge replicated."""
    matrix = np.float64([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(frame, matrix, (640, 480), borderMode=cv2.BORDER_REPLICATE)


Key = tuple[str, tuple[str, ...]]


def keys(verdicts: list[Verdict]) -> list[Key]:
    return [(v.decision, tuple(v.reasons)) for v in verdicts]


def agreement(reference: list[Key], other: list[Key], frames: list[int] | None = None) -> float:
    """Share of `frames` (all by default) where decision and reasons are equal."""
    frames = range(len(reference)) if frames is None else frames
    return sum(reference[i] == other[i] for i in frames) / max(len(frames), 1)


def neighbour_stable(reference: list[Key]) -> list[int]:
    """Frames where per-frame detection's verdict equals both neighbours' (no flicker there)."""
    return [
        i
        for i in range(1, len(reference) - 1)
        if reference[i - 1] == reference[i] == reference[i + 1]
    ]


def smoothed(verdicts: list[Key], size: int) -> list[tuple[str, ...]]:
    """The reasons the service would prompt (its Smoother over `size` verdicts)."""
    smoother = Smoother(size)
    return [smoother.push(reasons) for _, reasons in verdicts]


def timed(base: CompliancePipeline, tracking: TrackingPipeline, frames: list[np.ndarray]):
    """Both paths on each frame in turn; their verdicts and mean ms per frame."""
    reference, tracked, spent = [], [], [0.0, 0.0]
    for frame in frames:
        for path, out, slot in ((base, reference, 0), (tracking, tracked, 1)):
            start = time.perf_counter()
            out.append(path.check(frame)[0])
            spent[slot] += time.perf_counter() - start
    return reference, tracked, [s / len(frames) * 1000 for s in spent]


def one_sided(a: list[Key], b: list[Key]) -> Counter[str]:
    """Per reason, the frames where it is in one verdict of the pair only."""
    counts: Counter[str] = Counter()
    for x, y in zip(a, b, strict=True):
        counts.update(set(x[1]) ^ set(y[1]))
    return counts


def listed(counts: Counter[str]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.most_common()) or "none"


def fit_table(base: CompliancePipeline, frames: list[np.ndarray]) -> None:
    """How far the landmark fit follows the detector's jitter: every third frame with one face
    against itself moved one pixel right, each with its own detector box (the points should
    move by that pixel, the pose not at all); one dlib fit vs the mean of FIT_OFFSETS fits."""
    pairs = []
    for frame in frames[::3]:
        views = (frame, moved(frame, 1, 0))
        faces = [base.analyzer.detector.detect(view) for view in views]
        if all(len(found) == 1 for found in faces):
            grays = [cv2.cvtColor(view, cv2.COLOR_RGB2GRAY) for view in views]
            pairs.append([(g, found[0].box) for g, found in zip(grays, faces, strict=True)])
    averaged = landmarks.FIT_OFFSETS
    print(
        f"\nlandmark fit on {len(pairs)} frames vs the same frames moved 1 px (mean |difference|)\n"
    )
    print("| fit | ms per fit | points (px) | yaw (deg) | pitch (deg) | roll (deg) |")
    print("|---|---|---|---|---|---|")
    for label, offsets in (("one dlib fit", ((0.0, 0.0),)), (f"mean of {len(averaged)}", averaged)):
        landmarks.FIT_OFFSETS = offsets
        errors, angles, spent = [], [], 0.0
        for (gray, box), (gray_moved, box_moved) in pairs:
            start = time.perf_counter()
            fit = base.analyzer.landmarks.predict(gray, box)
            spent += time.perf_counter() - start
            fit_moved = base.analyzer.landmarks.predict(gray_moved, box_moved)
            errors.append(np.linalg.norm(fit_moved.points - fit.points - RIGHT, axis=1).mean())
            poses = [
                head_pose(Analysis([], None, f, None, None, None, g))
                for f, g in ((fit, gray), (fit_moved, gray_moved))
            ]
            angles.append(np.abs(np.subtract(*poses)))
        yaw, pitch, roll = np.mean(angles, axis=0)
        print(
            f"| {label} | {spent / len(pairs) * 1000:.2f} | {np.mean(errors):.2f} | {yaw:.2f} | "
            f"{pitch:.2f} | {roll:.2f} |"
        )
    landmarks.FIT_OFFSETS = averaged


def override(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    return name.strip(), tomllib.loads(f"v = {value}")["v"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames-per-face", type=int, default=60)
    parser.add_argument("--faces", type=int, default=6)
    parser.add_argument("--config", help="kiosk.toml to use (default: the kiosk's own lookup)")
    parser.add_argument("--set", action="append", type=override, default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-repeatability", action="store_true", help="skip the moved repeat")
    parser.add_argument("--one-fit", action="store_true", help="one dlib fit per landmark fit")
    parser.add_argument("--fits", action="store_true", help="only the landmark fit's table")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    config = load_config(args.config)
    settings = dataclasses.replace(config.tracking, **dict(args.set))
    base = CompliancePipeline(config)
    frames = clip(kiosk_frames()[: args.faces], args.frames_per_face)
    if args.fits:
        fit_table(base, frames)
        return
    if args.one_fit:
        landmarks.FIT_OFFSETS = ((0.0, 0.0),)
    base.check(frames[0])
    tracking = TrackingPipeline(base, settings)
    load_before = os.getloadavg()[0]
    reference_v, tracked_v, (ms_base, ms_tracked) = timed(base, tracking, frames)
    load_after = os.getloadavg()[0]
    reference, tracked = keys(reference_v), keys(tracked_v)
    stats = tracking.stats
    print(
        f"{len(frames)} frames 640x480, 1 thread, detector {config.detector.backend}, landmarks "
        f"{base.analyzer.landmarks.model_path.name} (mean of {len(landmarks.FIT_OFFSETS)} dlib "
        f"fits), load average {load_before:.1f} -> "
        f"{load_after:.1f}, tracking {settings}\n"
    )
    print("| path | ms / frame (mean) | fps |\n|---|---|---|")
    print(
        f"| detection every frame (`CompliancePipeline.check`) | {ms_base:.2f} | {1000 / ms_base:.0f} |"
    )
    print(f"| tracking (`TrackingPipeline.check`) | {ms_tracked:.2f} | {1000 / ms_tracked:.0f} |")
    detections = sum(stats.detections.values())
    why = ", ".join(f"{k} {v}" for k, v in stats.detections.most_common())
    print(
        f"\ndetector ran on {detections} of {stats.frames} frames ({stats.detection_rate:.1%}: "
        f"{why}); tracked {stats.tracked}; gate verdict reused on {stats.reused_gate}; "
        f"landmarks reused on {stats.landmarks_reused}"
    )
    runs = stats.check_runs + stats.check_reuses
    print(
        f"check results reused {stats.check_reuses} of {runs} ({stats.check_reuses / max(runs, 1):.1%})"
    )
    print(
        f"\nverdict agreement, tracking vs per-frame detection (decision + reasons): {agreement(reference, tracked):.2%}"
    )
    print(f"decisions alone: {agreement([k[:1] for k in reference], [k[:1] for k in tracked]):.2%}")
    stable = neighbour_stable(reference)
    print(
        f"where per-frame detection equals both neighbours ({len(stable)} frames): {agreement(reference, tracked, stable):.2%}"
    )
    if not args.no_repeatability:
        repeats = [
            keys([base.check(moved(f, dx, dy))[0] for f in frames]) for dx, dy in REPEAT_MOVES
        ]
        for (dx, dy), repeat in zip(REPEAT_MOVES, repeats, strict=True):
            print(
                f"per-frame detection vs itself on the frames moved by ({dx}, {dy}) px: "
                f"{agreement(reference, repeat):.2%}; tracking vs that repeat: {agreement(repeat, tracked):.2%}"
            )
            print(f"  reasons on one side only: {listed(one_sided(reference, repeat))}")
        repeatable = [i for i in range(len(frames)) if all(r[i] == reference[i] for r in repeats)]
        rest = [i for i in range(len(frames)) if i not in set(repeatable)]
        print(
            f"tracking agrees on {agreement(reference, tracked, repeatable):.2%} of the {len(repeatable)} "
            f"repeatable frames, {agreement(reference, tracked, rest):.2%} of the other {len(rest)}"
        )
    size = config.service.smoothing_frames
    prompts_ref, prompts_tracked = smoothed(reference, size), smoothed(tracked, size)
    same = sum(a == b for a, b in zip(prompts_ref, prompts_tracked, strict=True))
    print(
        f"smoothed prompts (the service's Smoother over {size} verdicts) agree on {same / len(frames):.2%}"
    )
    print(
        "verdict changes between consecutive frames: per-frame detection "
        f"{1 - agreement(reference[1:], reference[:-1]):.2%}, tracking "
        f"{1 - agreement(tracked[1:], tracked[:-1]):.2%} (cuts included)"
    )
    flips = one_sided(reference, tracked)
    print(f"frames where a reason is on one path only: {listed(flips)}")
    worst = flips.most_common(1)[0][0] if flips else None
    if worst:
        drop = [(d, tuple(r for r in rs if r != worst)) for d, rs in reference]
        kept = [(d, tuple(r for r in rs if r != worst)) for d, rs in tracked]
        print(f"agreement leaving {worst} out: {agreement(drop, kept):.2%}")


if __name__ == "__main__":
    main()
