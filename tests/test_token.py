"""Token photo geometry, print metadata and the framing prompts, on the shipped test face placed
in 1280x960 frames (tests/data/face_open.jpg)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from kiosk.config import TokenConfig
from kiosk.contract.reasons import (
    MOVE_BACK,
    MOVE_CLOSER,
    MOVE_DOWN,
    MOVE_LEFT,
    MOVE_RIGHT,
    MOVE_UP,
)
from kiosk.runtime.checks.framing import Framing
from kiosk.runtime.forensics.sr import make_sr_check
from kiosk.runtime.token.geometry import TOKEN_EYE_X, TOKEN_EYE_Y, measure_head, target_eye_line
from kiosk.runtime.token.photo import make_token
from kiosk.runtime.token.render import print_sheet

FACE = Path(__file__).parent / "data" / "face_open.jpg"
TOKEN = TokenConfig()


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(FACE)), cv2.COLOR_BGR2RGB)


def framed(face: np.ndarray, side: int = 400, left: int = 440, top: int = 280) -> np.ndarray:
    """The face scaled to `side` px and pasted (clipped) on a grey 1280x960 frame."""
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    frame = np.full((960, 1280, 3), 128, np.uint8)
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, 1280), min(top + side, 960)
    frame[y0:y1, x0:x1] = big[y0 - top : y1 - top, x0 - left : x1 - left]
    return frame


def rotated(frame: np.ndarray, degrees: float) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D((640, 480), degrees, 1.0)
    return cv2.warpAffine(frame, matrix, (1280, 960), borderValue=(128, 128, 128))


def decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def analyse(pipeline, rgb: np.ndarray):
    analysis = pipeline.analyzer.analyze(np.ascontiguousarray(rgb))
    assert analysis.landmarks is not None, analysis.reason
    return analysis


@pytest.mark.parametrize("name", ["icao_35x45", "us_2x2"])
@pytest.mark.parametrize("roll", [0.0, 10.0])
def test_token_geometry_measured_on_the_output(pipeline, face, name, roll):
    """Landmarks found again on the token photo put the head, eyes and midline where the format
    wants them, with the eyes level even when the head was tilted 10 degrees."""
    fmt = TOKEN.formats[name]
    frame = rotated(framed(face), roll)
    token = make_token(frame, analyse(pipeline, frame).landmarks, fmt, name)
    image = decode(token.jpeg)
    height, width = image.shape[:2]
    assert (width, height) == (round(fmt.width_mm / 25.4 * 600), round(fmt.height_mm / 25.4 * 600))
    assert abs(token.geometry["roll_corrected_deg"]) == pytest.approx(roll, abs=1.5)
    head = measure_head(analyse(pipeline, image).landmarks)
    # Levelled to the input's landmarks; found again on the 600 dpi output (a face ~2x larger) the
    # YuNet-paired model reads 1.5-2.4 deg of roll: landmark scatter, far from the 10 deg undone.
    assert abs(head.roll_deg) < 3.0
    head_ratio = head.length / height
    assert fmt.head_min_ratio <= head_ratio <= fmt.head_max_ratio
    # aimed at the middle; re-measured by the 14 MB landmark model within 3 points of it
    assert head_ratio == pytest.approx((fmt.head_min_ratio + fmt.head_max_ratio) / 2, abs=0.03)
    eye_line = 1 - head.eye_mid[1] / height
    assert fmt.eye_line_from_bottom_min <= eye_line <= fmt.eye_line_from_bottom_max
    assert eye_line == pytest.approx(target_eye_line(fmt, head_ratio), abs=0.015)  # as above
    assert (head.eye_mid[0] + head.centre_x) / width == pytest.approx(0.5, abs=0.01)
    assert token.geometry["outside_frame"] == dict.fromkeys(["left", "right", "top", "bottom"], 0)


def test_print_resolution_in_jfif_and_exif(pipeline, face):
    frame = framed(face)
    token = make_token(frame, analyse(pipeline, frame).landmarks, TOKEN.formats["icao_35x45"])
    with Image.open(io.BytesIO(token.jpeg)) as image:
        assert image.info["dpi"] == pytest.approx((600, 600))
        exif = image.getexif()
        assert (float(exif[0x011A]), float(exif[0x011B]), exif[0x0128]) == (600.0, 600.0, 2)


def test_token_frontal_puts_the_eyes_where_iso_19794_5_says(pipeline, face):
    frame = rotated(framed(face), -7.0)
    token = make_token(frame, analyse(pipeline, frame).landmarks, TOKEN.formats["icao_35x45"])
    image = decode(token.frontal_jpeg)
    height, width = image.shape[:2]
    assert (width, height) == (480, 640)
    head = measure_head(analyse(pipeline, image).landmarks)
    for eye, x in ((head.right_eye, TOKEN_EYE_X[0]), (head.left_eye, TOKEN_EYE_X[1])):
        assert eye[0] == pytest.approx(x * width, abs=0.02 * width)
        assert eye[1] == pytest.approx(TOKEN_EYE_Y * width, abs=0.02 * width)


def test_small_face_is_super_resolved(pipeline, face):
    """A face enlarged 2x or more is cut at the still's resolution and super-resolved x4."""
    from kiosk.config import load_config

    sr = make_sr_check(pipeline.registry, load_config())
    assert sr is not None, "the test bundle ships sr_x4"
    frame = framed(face, side=220, left=530, top=370)
    landmarks = analyse(pipeline, frame).landmarks
    fmt = TOKEN.formats["icao_35x45"]
    token = make_token(frame, landmarks, fmt, sr=sr)
    plain = make_token(frame, landmarks, fmt)
    assert token.geometry["scale"] >= 2.0
    assert token.geometry["super_resolved"] and not plain.geometry["super_resolved"]
    assert any("super-resolved" in w for w in token.warnings)
    sr_image, bicubic = decode(token.jpeg), decode(plain.jpeg)
    assert sr_image.shape == bicubic.shape
    # Same picture (same geometry), not the same pixels.
    difference = np.abs(sr_image.astype(int) - bicubic.astype(int))
    assert 0 < difference.mean() < 12


def test_print_sheet_holds_four_copies_at_300_dpi(pipeline, face):
    frame = framed(face)
    fmt = TOKEN.formats["icao_35x45"]
    token = make_token(frame, analyse(pipeline, frame).landmarks, fmt)
    sheet = print_sheet(token.jpeg, fmt, TOKEN.print_sheet)
    with Image.open(io.BytesIO(sheet)) as image:
        assert image.info["dpi"] == pytest.approx((300, 300))
        assert sorted(image.size) == [1181, 1772]  # 10x15 cm at 300 dpi
        grey = np.asarray(image.convert("L"))
    # Four 413x531 px photos (35x45 mm at 300 dpi): count non-white blobs of that size.
    _count, _labels, stats, _ = cv2.connectedComponentsWithStats((grey < 245).astype(np.uint8))
    photos = [s for s in stats[1:] if abs(s[2] - 413) <= 3 and abs(s[3] - 531) <= 3]
    assert len(photos) == 4


@pytest.mark.parametrize(
    ("placement", "reason"),
    [
        ({}, None),
        ({"left": -60}, MOVE_LEFT),  # at the image's left edge: the applicant's right
        ({"left": 940}, MOVE_RIGHT),
        ({"top": 0}, MOVE_DOWN),  # too high
        ({"top": 560}, MOVE_UP),
        ({"side": 960, "left": 160, "top": 0}, MOVE_BACK),  # too close: crop past top and bottom
    ],
)
def test_framing_prompts(pipeline, face, placement, reason):
    result = Framing()(analyse(pipeline, framed(face, **placement)))
    assert result.failed == (reason is not None)
    assert result.reason == reason
    record = result.as_dict()
    assert record["limit"] == 0.0
    assert (record["value"] > 0) == (reason is not None)


def test_framing_asks_to_come_closer_when_the_token_would_be_blurred(pipeline, face):
    analysis = analyse(pipeline, framed(face))
    # The same preview, but the still has only 0.3 px per preview px: token enlarged > 4x.
    result = Framing()(dataclasses.replace(analysis, still_scale=0.3))
    assert (result.failed, result.reason, result.limit) == (True, MOVE_CLOSER, 4.0)
    assert Framing()(analysis).failed is False
