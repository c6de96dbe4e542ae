"""The image-measure ICAO checks on variants of the shipped test faces: each check fires on the
fault it is for (rotated, darkened, brightened, blurred, half shadowed, patterned background,
hat, too few pixels) and not on the plain frame; image-quality faults come first and suppress the
classifiers' reasons."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from kiosk.config import parse_config
from kiosk.contract import reasons
from kiosk.contract.errors import ConfigError
from kiosk.runtime.annotate import annotate, check_line
from kiosk.runtime.checks import MEASURES
from kiosk.runtime.checks.pose import head_pose
from kiosk.runtime.imageio import load_rgb
from tests.conftest import REPO

CLASSIFIERS = ("eyes_closed", "mouth_open", "veil")


def measures(pipeline, rgb: np.ndarray, still_scale: float = 1.0):
    verdict, analysis = pipeline.check(rgb, still_scale=still_scale)
    assert analysis.reason is None, analysis.reason
    return verdict, analysis


def scaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def rotated_about_face(rgb: np.ndarray, centre: tuple[float, float], angle: float) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    return cv2.warpAffine(rgb, matrix, rgb.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def base(pipeline, portrait):
    return measures(pipeline, portrait)


def test_the_plain_portrait_passes_the_quality_and_pose_checks(base):
    verdict, _ = base
    for name in ("underexposure", "overexposure", "dynamic_range", "sharpness", "motion_blur"):
        assert not verdict.checks[name].failed, name
    # Yaw and roll are frontal; her pitch measures ~10 deg with the landmark model trained on
    # YuNet's boxes (test_cli_check.py), so the pose check as a whole is not asserted here.
    pose = verdict.checks["head_pose"].details
    assert abs(pose["yaw_deg"]) <= 5.0 and abs(pose["roll_deg"]) <= 8.0
    assert not verdict.checks["illumination"].failed
    assert not verdict.checks["head_covering"].failed


def test_record_adds_value_limit_bound_and_keeps_the_old_keys(base):
    verdict, _ = base
    record = json.loads(json.dumps(verdict.as_record("frame", 0), allow_nan=False))["checks"]
    assert set(MEASURES) | set(CLASSIFIERS) <= set(record)
    for name in CLASSIFIERS:
        assert {"score", "threshold", "failed"} <= set(record[name])
    for name in MEASURES:
        assert {"score", "threshold", "failed", "value", "limit", "bound"} <= set(record[name])
    pose = record["head_pose"]["details"]
    assert set(pose) == {"yaw_deg", "pitch_deg", "roll_deg"}


def test_roll_is_measured_and_a_tilted_head_is_told_to_straighten(pipeline, portrait, base):
    _, analysis = base
    centre = tuple(float(v) for v in analysis.landmarks.points[27:36].mean(axis=0))
    verdict, tilted = measures(pipeline, rotated_about_face(portrait, centre, 20))
    roll = head_pose(tilted)[2] - head_pose(analysis)[2]
    assert roll == pytest.approx(-20, abs=4)
    assert verdict.checks["head_pose"].failed
    assert verdict.checks["head_pose"].reason == reasons.HEAD_TILTED
    assert reasons.HEAD_TILTED in verdict.reasons


def test_yaw_changes_sign_in_the_mirror(pipeline):
    face = load_rgb(REPO / "tests" / "data" / "face_open.jpg")
    frame = np.full((480, 640, 3), 200, np.uint8)
    frame[40:440, 120:520] = cv2.resize(face, (400, 400))
    _, analysis = measures(pipeline, frame)
    _, mirrored = measures(pipeline, np.ascontiguousarray(frame[:, ::-1]))
    yaw, mirrored_yaw = head_pose(analysis)[0], head_pose(mirrored)[0]
    assert abs(yaw) > 5 and mirrored_yaw == pytest.approx(-yaw, abs=3)


def test_dark_frame_is_too_dark_first_and_suppresses_the_classifiers(pipeline, portrait):
    verdict, _ = measures(pipeline, scaled(portrait, 0.12))
    assert verdict.reasons[0] == reasons.TOO_DARK
    assert verdict.prompt == reasons.PROMPTS[reasons.TOO_DARK]
    record = verdict.as_record("frame", 0)["checks"]
    for name in CLASSIFIERS:
        assert record[name]["suppressed"] is True and record[name]["score"] is not None
        assert name not in verdict.reasons
    assert not {reasons.MOUTH_OPEN, reasons.EYES_CLOSED} & set(verdict.reasons)


def test_brightened_frame_is_overexposed(pipeline, portrait):
    verdict, _ = measures(pipeline, np.clip(portrait * 1.5 + 30, 0, 255).astype(np.uint8))
    assert verdict.checks["overexposure"].failed
    assert verdict.reasons[0] == reasons.OVEREXPOSED


def test_washed_out_frame_has_too_little_dynamic_range(pipeline, portrait):
    flat = (128 + (portrait.astype(np.float32) - 128) * 0.2).astype(np.uint8)
    verdict, _ = measures(pipeline, flat)
    assert verdict.checks["dynamic_range"].failed


def test_blurred_frame_is_blurred_and_the_mouth_verdict_is_suppressed(pipeline, portrait, base):
    verdict, _ = measures(pipeline, cv2.GaussianBlur(portrait, (0, 0), 4))
    assert verdict.checks["sharpness"].failed and not base[0].checks["sharpness"].failed
    assert verdict.reasons[0] == reasons.BLURRED
    assert reasons.MOUTH_OPEN not in verdict.reasons and verdict.checks["mouth_open"].suppressed


def test_focus_is_normalised_by_face_size(pipeline, portrait, base):
    """The same face at 0.75x keeps its sharpness value within a third."""
    small = cv2.resize(portrait, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    canvas = np.full_like(portrait, 128)
    canvas[: small.shape[0], : small.shape[1]] = small
    verdict, _ = measures(pipeline, canvas)
    assert verdict.checks["sharpness"].value == pytest.approx(
        base[0].checks["sharpness"].value, rel=0.35
    )


def test_horizontal_motion_blur_raises_the_gradient_coherence(pipeline, portrait, base):
    kernel = np.full((1, 25), 1 / 25, np.float32)
    verdict, _ = measures(pipeline, cv2.filter2D(portrait, -1, kernel))
    assert verdict.checks["motion_blur"].value > 1.8 * base[0].checks["motion_blur"].value


def test_half_shadowed_face_is_unevenly_lit(pipeline, portrait, base):
    _, analysis = base
    middle = round(float(analysis.landmarks.points[27:31, 0].mean()))
    shadowed = portrait.astype(np.float32)
    shadowed[:, :middle] *= 0.35
    verdict, _ = measures(pipeline, shadowed.astype(np.uint8))
    assert verdict.checks["illumination"].failed
    assert reasons.UNEVEN_LIGHT in verdict.reasons


def _head_mask(analysis, shape, grow: float = 1.12) -> np.ndarray:
    """The head (face, hair, neck and below), to keep when the background is replaced."""
    points = analysis.landmarks.points
    centre = points[27:31].mean(axis=0)
    width = float(np.linalg.norm(points[16] - points[0]))
    height = float(points[8, 1] - points[19, 1])
    mask = np.zeros(shape[:2], np.uint8)
    axes = (round(0.62 * width * grow), round(1.15 * height * grow))
    cv2.ellipse(mask, (round(centre[0]), round(centre[1] - 0.1 * height)), axes, 0, 0, 360, 1, -1)
    mask[round(points[8, 1]) :, :] = 1  # neck and shoulders stay
    return mask.astype(bool)


@pytest.mark.parametrize("pattern", ["stripes", "texture"])
def test_background_plain_passes_and_a_pattern_or_texture_fails(pipeline, portrait, base, pattern):
    _, analysis = base
    keep = _head_mask(analysis, portrait.shape)
    plain = np.where(keep[..., None], portrait, np.uint8(215))
    verdict, _ = measures(pipeline, plain)
    assert not verdict.checks["background_plain"].failed
    assert not verdict.checks["background_uniform"].failed
    if pattern == "stripes":
        backdrop = np.full_like(portrait, 215)
        backdrop[:, (np.arange(portrait.shape[1]) // 10) % 2 == 0] = (60, 90, 160)
    else:
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 255, portrait.shape, dtype=np.uint8)
        backdrop = cv2.GaussianBlur(noise, (0, 0), 1.5)
    patterned = np.where(keep[..., None], portrait, backdrop)
    verdict, _ = measures(pipeline, patterned)
    assert verdict.checks["background_plain"].failed or verdict.checks["background_uniform"].failed
    assert reasons.BACKGROUND_NOT_PLAIN in verdict.reasons


def test_background_out_of_view_is_not_judged(pipeline):
    """A tight crop (the test photo itself) shows no background ring: null, not a failure."""
    verdict, _ = measures(pipeline, load_rgb(REPO / "tests" / "data" / "face_open.jpg"))
    record = verdict.as_record("f", 0)["checks"]["background_plain"]
    assert record["value"] is None and record["failed"] is False


def test_hat_is_a_head_covering(pipeline, portrait, base):
    """face_open.jpg wears a brimmed hat; a band painted over the astronaut's forehead too."""
    face = load_rgb(REPO / "tests" / "data" / "face_open.jpg")
    frame = np.full((480, 640, 3), 200, np.uint8)
    frame[40:440, 120:520] = cv2.resize(face, (400, 400))
    verdict, _ = measures(pipeline, frame)
    assert verdict.checks["head_covering"].failed
    _, analysis = base
    points = analysis.landmarks.points
    brow = int(points[17:27, 1].max())  # a hat pulled down to the brows
    hatted = portrait.copy()
    hatted[:brow, int(points[0, 0]) - 30 : int(points[16, 0]) + 30] = (40, 60, 120)
    verdict, _ = measures(pipeline, hatted)
    assert verdict.checks["head_covering"].failed and not base[0].checks["head_covering"].failed
    assert reasons.HEAD_COVERED in verdict.reasons


def test_resolution_is_judged_in_the_still(pipeline, portrait, base):
    """The astronaut's eyes are ~68 px apart at 640x480: too few for the photo unless the still
    has more pixels than the analysed frame."""
    assert base[0].checks["resolution"].failed
    assert reasons.LOW_RESOLUTION in base[0].reasons
    verdict, _ = measures(pipeline, portrait, still_scale=2.0)
    assert not verdict.checks["resolution"].failed
    assert verdict.checks["resolution"].value == pytest.approx(
        2 * base[0].checks["resolution"].value
    )


@pytest.mark.parametrize(
    ("name", "failed"),
    [("face_open.jpg", set()), ("face_eyes_closed.jpg", {"eyes_closed"})],
)
def test_classifier_verdicts_on_the_test_photos_are_unchanged(pipeline, name, failed):
    verdict, _ = pipeline.check(load_rgb(REPO / "tests" / "data" / name))
    assert {n for n in CLASSIFIERS if verdict.checks[n].failed} == failed


def test_annotation_draws_the_measures(base, portrait):
    verdict, analysis = base
    drawn = annotate(portrait, verdict, analysis)
    assert drawn.shape == portrait.shape and not np.array_equal(drawn, portrait)
    assert check_line("resolution", verdict.checks["resolution"]).startswith("resolution 6")
    assert ">= 90" in check_line("resolution", verdict.checks["resolution"])


def test_limits_are_bounded_in_the_config():
    with pytest.raises(ConfigError, match="max_dark_fraction"):
        parse_config({"icao": {"max_dark_fraction": 2.0}})
    assert parse_config({"icao": {"min_sharpness": 0.1}}).icao.min_sharpness == 0.1
