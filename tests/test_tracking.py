"""Tracking between frames (issue 16): the tracker follows the face, the tracked stream keeps
the per-frame verdicts, re-detects when the scene changes, and `kiosk check` starts lazily."""

from __future__ import annotations

import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from kiosk.config import TrackingConfig
from kiosk.contract.errors import ConfigError
from kiosk.contract.reasons import NO_FACE
from kiosk.runtime.pipeline import TrackingPipeline
from kiosk.runtime.vision import landmarks
from kiosk.runtime.vision.tracker import FaceTracker, small_copy


def shifted(frame: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.array([[1, 0, dx], [0, 1, dy]], np.float64)
    return cv2.warpAffine(frame, matrix, frame.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def slow_clip(portrait: np.ndarray, count: int) -> list[np.ndarray]:
    """The portrait drifting about one pixel per frame, as an applicant settling in."""
    return [shifted(portrait, 8 * np.sin(t / 6), 3 * np.sin(t / 9)) for t in range(count)]


def gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def test_tracker_follows_a_moved_face_to_subpixel(pipeline, portrait):
    face = pipeline.analyzer.detector.detect(portrait)[0]
    tracker = FaceTracker()
    tracker.start(face, small_copy(gray(portrait)))
    moved = tracker.track(small_copy(gray(shifted(portrait, 6.0, -3.0))))
    assert moved is not None and tracker.correlation > 0.95
    np.testing.assert_allclose(np.subtract(moved.box, face.box), [6, -3, 6, -3], atol=1.5)


def test_tracker_asks_for_detection_on_interval_and_scene_change(pipeline, portrait, no_face):
    face = pipeline.analyzer.detector.detect(portrait)[0]
    tracker = FaceTracker()
    assert tracker.due(small_copy(gray(portrait))) == "no_track"
    small = small_copy(gray(portrait))
    tracker.start(face, small)
    assert tracker.due(small) is None
    assert tracker.due(small_copy(gray(no_face))) == "scene_change"
    for _ in range(tracker.settings.redetect_every - 1):
        tracker.track(small)
    assert tracker.due(small) == "interval"


def test_the_fit_moves_with_the_frame_more_closely_than_one_dlib_fit(
    pipeline, portrait, monkeypatch
):
    """Per-frame detection on a frame and on it moved by one pixel: the landmarks (each frame's
    own detector box) should move by that pixel. One dlib fit follows the box's jitter (0.65 px
    mean error on these frames); the mean of the FIT_OFFSETS fits about 0.45 px."""
    analyzer = pipeline.analyzer

    def error() -> float:
        errors = []
        for frame in slow_clip(portrait, 12):
            points = []
            for dx, image in ((0, frame), (1, shifted(frame, 1, 0))):
                box = analyzer.detector.detect(image)[0].box
                points.append(analyzer.landmarks.predict(gray(image), box).points - [dx, 0])
            errors.append(np.linalg.norm(points[0] - points[1], axis=1).mean())
        return float(np.mean(errors))

    averaged = error()
    monkeypatch.setattr(landmarks, "FIT_OFFSETS", ((0.0, 0.0),))
    assert averaged <= 0.8 * error()


def test_tracked_verdicts_agree_with_per_frame_detection(pipeline, portrait):
    """Decisions and every reason, head pose included, agree on >= 99 % of frames of a slow
    drift (the default YuNet boxes with the landmark model trained on them). Per-frame
    detection repeats its own verdicts on these frames moved by one pixel, so the reference is
    not noise here; on the bench clip it is not repeatable on ~1 % of frames (~5 % with one
    dlib fit per landmark fit), which bounds the agreement there (docs/performance.md,
    bench/bench_video.py)."""
    frames = slow_clip(portrait, 24)
    reference = [pipeline.check(frame)[0] for frame in frames]
    repeat = [pipeline.check(shifted(frame, 1, 0))[0] for frame in frames]
    assert all(a.reasons == b.reasons for a, b in zip(reference, repeat, strict=True))
    tracking = TrackingPipeline(pipeline, TrackingConfig())
    tracked = [tracking.check(frame)[0] for frame in frames]
    pairs = list(zip(reference, tracked, strict=True))
    assert all(a.decision == b.decision and a.faces == b.faces for a, b in pairs)
    same = sum(a.reasons == b.reasons for a, b in pairs)
    assert same / len(pairs) >= 0.99, [(i, a.reasons, b.reasons) for i, (a, b) in enumerate(pairs)]
    stats = tracking.stats
    assert sum(stats.detections.values()) <= len(frames) // 2  # the point of tracking
    assert stats.tracked >= len(frames) // 2 and stats.check_reuses > 0


def test_tracking_redetects_when_the_face_leaves(pipeline, portrait, no_face):
    tracking = TrackingPipeline(pipeline)
    assert tracking.check(portrait)[0].faces == 1
    verdict, _ = tracking.check(no_face)
    assert verdict.reasons == [NO_FACE]
    assert tracking.stats.detections["scene_change"] == 1
    assert tracking.check(no_face)[0].reasons == [NO_FACE]  # unchanged empty scene: reused
    assert tracking.stats.reused_gate == 1
    assert tracking.check(portrait)[0].faces == 1


def test_a_changed_eye_reruns_dlib_and_the_eye_check(pipeline, portrait):
    """The fit is reused while its crops hold; covering an eye changes the eye crop, so dlib and
    eyes_closed run again and score about what the stateless path scores."""
    tracking = TrackingPipeline(pipeline)
    tracking.check(portrait)
    moved = shifted(portrait, 1.0, 0.0)
    before = tracking.check(moved)[0].checks["eyes_closed"].score
    assert tracking.stats.landmarks_reused == 1
    eye = pipeline.check(moved)[1].landmarks.group("right_eye").mean(axis=0).astype(int)
    covered = moved.copy()
    cv2.circle(covered, (int(eye[0]), int(eye[1])), 14, (40, 30, 30), -1)
    verdict = tracking.check(covered)[0]
    assert tracking.stats.landmarks_reused == 1
    score = verdict.checks["eyes_closed"].score
    assert score != before  # not the reused result
    # the tracked box is not the detector's box on this frame: close, not equal (the score fuses
    # the eye aspect ratio, which moves with landmarks fitted from a box a few pixels off)
    assert score == pytest.approx(pipeline.check(covered)[0].checks["eyes_closed"].score, abs=0.1)


def test_every_frame_settings_reproduce_the_stateless_path(pipeline, portrait):
    """redetect_every = rescore_every = 1 is the per-frame pipeline, record for record."""
    every = TrackingConfig(redetect_every=1, rescore_every=1)
    tracking = TrackingPipeline(pipeline, every)
    for frame in slow_clip(portrait, 3):
        expected = pipeline.check(frame)[0].as_record("clip", 0)
        assert tracking.check(frame)[0].as_record("clip", 0) == expected


@pytest.mark.parametrize(
    "field,value", [("redetect_every", 0), ("min_correlation", 1.5), ("max_crop_change", -1.0)]
)
def test_tracking_config_is_bounded(field, value):
    with pytest.raises(ConfigError, match=field):
        TrackingConfig(**{field: value})


def test_lazy_parser_lists_every_command_with_its_own_help():
    from kiosk.cli import build_parser

    def helps(parser):
        action = next(a for a in parser._actions if a.dest == "command")
        return {c.dest: c.help for c in action._choices_actions}

    assert helps(build_parser(["check", "photo.jpg"])) == helps(build_parser())


def test_kiosk_check_imports_only_what_check_needs():
    script = (
        "import sys; from kiosk.cli import build_parser; build_parser(['check', 'x']);"
        "print(' '.join(m for m in ('scipy', 'kiosk.service', 'kiosk.runtime.privacy', "
        "'kiosk.runtime.forensics', 'kiosk.runtime.pipeline', 'tensorflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.device
def test_tracked_frame_rate_on_the_kiosk(pipeline, portrait):
    """On the Pi: the tracked stream's mean cost per 640x480 frame (docs/performance.md projects
    ~20 ms on a Pi 4 core and ~9 ms on a Pi 5; 50 ms = 20 fps is the bar for live prompts)."""
    frames = slow_clip(portrait, 60)
    tracking = TrackingPipeline(pipeline)
    tracking.check(frames[0])
    start = time.perf_counter()
    for frame in frames:
        tracking.check(frame)
    mean_ms = (time.perf_counter() - start) / len(frames) * 1000
    print(f"tracked: {mean_ms:.1f} ms per frame, stats {tracking.stats}")
    assert mean_ms <= 50
