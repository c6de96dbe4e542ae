"""Pipeline latency per stage at 640x480, one thread, with each detector backend (MTCNN on
LiteRT, YuNet) beside the `mtcnn` package in the same run: detection, landmarks, crops, each
classifier, end to end; then the peak RSS of a `kiosk check` process over a folder of frames.

    .venv/bin/python bench/bench_pipeline.py [--frames 100] [--dlib-model FILE.dat]

Frames: the astronaut test face (scikit-image) and five faces68/ photos, each placed on a
640x480 canvas so the face box is ~150-250 px, as at a kiosk. Times are medians in ms.

`--dlib-model` times dlib itself on the same boxes in the same loop beside the kiosk's landmark
fit (the bundle's trees as arrays, kiosk/runtime/vision/forest.py), given the bundle model as
dlib's .dat: training's --out-dir keeps it, or the tree before the export has it, e.g.
`git show ff417e4:models/shape_predictor_yunet.dat > /tmp/yunet.dat` (and _mtcnn). The row
also counts the frames whose points differ from dlib's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench.frames import clip, drift, kiosk_frames  # noqa: E402
from kiosk.config import TrackingConfig, load_config  # noqa: E402
from kiosk.runtime.models.registry import ModelRegistry  # noqa: E402
from kiosk.runtime.pipeline import CompliancePipeline, TrackingPipeline  # noqa: E402
from kiosk.runtime.vision.analysis import Analysis  # noqa: E402
from kiosk.runtime.vision.detectors import DETECTORS  # noqa: E402
from kiosk.runtime.vision.landmarks import LandmarkPredictor  # noqa: E402
from kiosk.runtime.vision.regions import extract_regions  # noqa: E402
from kiosk.runtime.vision.tracker import FaceTracker, small_copy  # noqa: E402


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return (time.perf_counter() - start) * 1000, result


LANDMARKS = "landmarks (4 fits, the bundle's trees as arrays)"
DLIB = "landmarks, the same 4 fits in dlib (--dlib-model)"


def stage_times(
    pipeline: CompliancePipeline,
    frames: list[np.ndarray],
    count: int,
    dlib_model: LandmarkPredictor | None = None,
) -> dict[str, list[float]]:
    analyzer, checks = pipeline.analyzer, pipeline.checks
    times: dict[str, list[float]] = {
        k: []
        for k in (
            "detection",
            LANDMARKS,
            *([DLIB] if dlib_model else []),
            "crops",
            *(check.name for check in checks.checks),
            "end to end (check)",
            "tracked: follow the face (NCC on a quarter-size copy)",
            "tracked: landmarks followed (dlib's fit moved, crops compared)",
        )
    }
    tracker = FaceTracker()
    differing = 0
    for i in range(count):
        frame = frames[i % len(frames)]
        t, faces = timed(analyzer.detector.detect, frame)
        times["detection"].append(t)
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        t, landmarks = timed(analyzer.landmarks.predict, gray, faces[0].box)
        times[LANDMARKS].append(t)
        if dlib_model:
            t, theirs = timed(dlib_model.predict, gray, faces[0].box)
            times[DLIB].append(t)
            differing += not np.array_equal(theirs.points, landmarks.points)
        t, regions = timed(extract_regions, gray, landmarks, faces[0].box)
        times["crops"].append(t)
        analysis = Analysis(faces, faces[0], landmarks, regions, None, frame, gray)
        for check in checks.checks:  # eyes_closed scores both eyes
            times[check.name].append(timed(check, analysis)[0])
        times["end to end (check)"].append(timed(pipeline.check, frame)[0])
        # The tracked path's own stages on the next frame of a slow drift (bench_video.py).
        tracker.start(faces[0], small_copy(gray))
        moved = drift(frame, 1.0)
        moved_gray = cv2.cvtColor(moved, cv2.COLOR_RGB2GRAY)
        t, face = timed(follow_face, tracker, moved_gray)
        times["tracked: follow the face (NCC on a quarter-size copy)"].append(t)
        t, _ = timed(analyzer.follow, moved, moved_gray, face or faces[0], analysis, 4.0)
        times["tracked: landmarks followed (dlib's fit moved, crops compared)"].append(t)
    if dlib_model:
        print(f"{analyzer.landmarks.model_path.name}: {differing} of {count} fits differ from dlib")
    return times


def follow_face(tracker: FaceTracker, gray: np.ndarray):
    return tracker.track(small_copy(gray))


def tracked_stream(pipeline: CompliancePipeline, frames: list[np.ndarray], count: int) -> dict:
    """Per-frame times of a drifting clip with and without tracking: mean, since the tracked
    stream's cost is its re-detections averaged over the frames between them."""
    clip_frames = clip(frames, max(count // len(frames), 10), empty=0)
    per_frame = [timed(pipeline.check, f)[0] for f in clip_frames]
    tracking = TrackingPipeline(pipeline, TrackingConfig())
    tracked = [timed(tracking.check, f)[0] for f in clip_frames]
    return {
        "frames": len(clip_frames),
        "per_frame": per_frame,
        "tracked": tracked,
        "stats": tracking.stats,
    }


OURS = "detection, min_face_size 20 (MTCNN, ours, LiteRT)"
PACKAGE = "detection, min_face_size 20 (mtcnn package, Keras/TF)"


def detector_comparison(frames: list[np.ndarray], count: int) -> dict[str, list[float]]:
    """Every detector at min_face_size 20, the package default: the package's own pyramid breaks
    (an empty convolution) at larger minimum sizes, which the LiteRT cascade skips."""
    from kiosk.runtime.vision.mtcnn_lite import MtcnnLite, MtcnnSettings
    from kiosk.runtime.vision.yunet import Yunet, YunetSettings

    registry = ModelRegistry(REPO / "models")
    detectors = {
        OURS: MtcnnLite(registry, MtcnnSettings(min_face_size=20)),
        "detection, min_face_size 20 (YuNet, detected 320 px wide)": Yunet(
            registry, YunetSettings(min_face_size=20)
        ),
    }
    times = {}
    for name, detector in detectors.items():
        detector.detect(frames[0])
        times[name] = [timed(detector.detect, frames[i % len(frames)])[0] for i in range(count)]
    reference = reference_times(frames, count, 20)
    if reference:
        times[PACKAGE] = reference
    return times


def reference_times(frames: list[np.ndarray], count: int, min_face_size: int) -> list[float] | None:
    try:
        from training.mtcnn_reference import MtcnnReference
    except ImportError:
        return None
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    reference = MtcnnReference(min_face_size=min_face_size)
    reference.detect(frames[0])
    return [timed(reference.detect, frames[i % len(frames)])[0] for i in range(count)]


def peak_rss_mb(frames: list[np.ndarray]) -> float:
    """Peak RSS (VmHWM) of a `kiosk check` process over a folder of frames.

    Read from the child's own /proc status: getrusage's children maxrss would include the
    memory of this (TensorFlow-loaded) parent, which Linux carries across fork and exec.
    """
    script = (
        "import sys; from kiosk.cli import main; main(['check', '--json', sys.argv[1]]);"
        "print(next(x for x in open('/proc/self/status') if x.startswith('VmHWM')), file=sys.stderr)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for i, frame in enumerate(frames * 5):
            cv2.imwrite(f"{tmp}/frame_{i:03d}.png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        result = subprocess.run(
            [sys.executable, "-c", script, tmp],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    line = next(x for x in result.stderr.splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def with_backend(config, backend: str):
    """The config with [detector] backend set (the BlazeFace fallback only beside YuNet, whose
    boxes it is mapped to: the config refuses it with MTCNN)."""
    fallback = config.detector.fallback if backend == "yunet" else "none"
    return dataclasses.replace(
        config,
        detector=dataclasses.replace(config.detector, backend=backend, fallback=fallback),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument(
        "--dlib-model",
        type=Path,
        action="append",
        default=[],
        help="a bundle landmark model as dlib's .dat (its name says the backend); repeatable",
    )
    args = parser.parse_args()
    config = load_config()
    frames = kiosk_frames()
    per_backend = {}
    for backend in DETECTORS:
        registry = ModelRegistry(config.models_dir, config.models.public_key_path)
        pipeline = CompliancePipeline(with_backend(config, backend), registry)
        pipeline.check(frames[0])  # warm-up: interpreter caches per pyramid shape
        reference = next((p for p in args.dlib_model if backend in p.name), None)
        per_backend[backend] = stage_times(
            pipeline,
            frames,
            args.frames,
            LandmarkPredictor(reference, pipeline.analyzer.landmarks.box_scale)
            if reference
            else None,
        )
    registry = ModelRegistry(config.models_dir, config.models.public_key_path)
    stream = tracked_stream(CompliancePipeline(config, registry), frames, args.frames)
    comparison = detector_comparison(frames, max(args.frames // 4, 5))
    print(
        f"640x480 frames, 1 thread, {args.frames} frames, min_face_size "
        f"{config.detector.min_face_size}; median / p90 ms\n"
    )
    print("| stage | " + " | ".join(f"[detector] backend = {b}" for b in per_backend) + " |")
    print("|---|" + "---|" * len(per_backend))
    for stage in dict.fromkeys(s for times in per_backend.values() for s in times):
        cells = [
            f"{np.median(times[stage]):.2f} / {np.percentile(times[stage], 90):.2f}"
            if stage in times
            else "—"
            for times in per_backend.values()
        ]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("\n| detector alone | median ms | p90 ms |\n|---|---|---|")
    for name, values in comparison.items():
        print(f"| {name} | {np.median(values):.2f} | {np.percentile(values, 90):.2f} |")
    print(
        "\nMediaPipe face detection + mesh (the peer a user would pick): not run. Its wheel "
        "(mediapipe 0.10.18, cp311) requires numpy<2 and opencv-contrib-python, which would "
        "replace this environment's numpy 2 and headless OpenCV (reports/detectors/README.md); "
        "the issue quotes 7-9 ms per frame for detect + 468-point mesh on this host."
    )
    stats = stream["stats"]
    print(
        f"\n| video, {stream['frames']} drifting 640x480 frames, [detector] backend = "
        f"{config.detector.backend} | "
        "mean ms / frame | fps |\n|---|---|---|"
    )
    for name, key in (("detection every frame", "per_frame"), ("tracking", "tracked")):
        mean = float(np.mean(stream[key]))
        print(f"| {name} | {mean:.2f} | {1000 / mean:.0f} |")
    print(
        f"\ntracking re-detected on {stats.detection_rate:.1%} of frames "
        f"({dict(stats.detections)}); dlib fit reused on {stats.landmarks_reused}, check results "
        f"reused {stats.check_reuses} of {stats.check_runs + stats.check_reuses}; verdict "
        "agreement: bench/bench_video.py"
    )
    if PACKAGE in comparison:
        ours, reference = np.median(comparison[OURS]), np.median(comparison[PACKAGE])
        print(f"\nLiteRT cascade speed-up at min_face_size 20: {reference / ours:.1f}x")
    print(
        f"\npeak RSS of `kiosk check` over {len(frames) * 5} frames: {peak_rss_mb(frames):.0f} MB"
    )


if __name__ == "__main__":
    main()
