"""Where the token photo lies in the frame: head geometry from the 68 landmarks, and the one
similarity transform (rotate to level the eyes, scale, shift) from the frame to each output.

Coordinates are image pixels, y down. The "levelled" frame has its origin at the midpoint of the
two eye centres and its x axis along the eye line.

The crown is not a landmark: it is estimated from the neoclassical two-section head canon, which
puts the eye line halfway between the vertex (top of the skull) and the chin (gnathion);
Farkas, Hreczko, Kolar and Munro, "Vertical and horizontal proportions of the face in young
adult North American Caucasians: revision of neoclassical canons", Plast. Reconstr. Surg. 75
(1985) 328-338, measured how closely adults follow it. The eye line (12 landmarks) is the most
precise anchor dlib gives; relative to the eyebrows the same rule puts the crown about 0.7 of
the brow-to-chin height above the brows (docs/token.md). Hair is not part of the estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kiosk.config import TokenConfig, TokenFormat
from kiosk.contract.errors import ConfigError
from kiosk.runtime.vision.types import Landmarks

CHIN = 8  # iBUG 68: the lowest jaw point (gnathion)
NOSE_BRIDGE = 27  # top of the nose between the eyes (close to the nasion)
CROWN_RATIO = 1.0  # crown above the eye line / chin below it (two-section head canon)
TOP_SHARE = 1 / 3  # of the free height, at least this share lies above the crown

# ISO/IEC 19794-5 Token Frontal geometry (clause 9, "Token Face Image Type"): height W / 0.75,
# eye centres at x = 0.375 W and 0.625 W (eye distance W / 4), y = 0.6 W from the top; the
# standard's minimum width is 240 px (60 px between the eyes).
TOKEN_ASPECT = 0.75
TOKEN_EYE_X = (0.375, 0.625)
TOKEN_EYE_Y = 0.6
TOKEN_MIN_WIDTH = 240
MM_PER_INCH = 25.4


def mm_to_px(mm: float, dpi: int) -> int:
    return round(mm / MM_PER_INCH * dpi)


def format_size_px(fmt: TokenFormat) -> tuple[int, int]:
    """(width, height) of a format in pixels at its dpi."""
    return mm_to_px(fmt.width_mm, fmt.dpi), mm_to_px(fmt.height_mm, fmt.dpi)


@dataclass(frozen=True)
class Head:
    """A face measured in the levelled frame (origin at the eyes' midpoint, eye line level)."""

    eye_mid: np.ndarray  # (2,) frame px
    right_eye: np.ndarray  # subject's right: image left
    left_eye: np.ndarray
    roll_deg: float  # eye line angle in the frame, clockwise positive (image y down)
    chin_below_eyes: float  # px
    centre_x: float  # levelled x of the face's vertical midline (nose bridge / mouth)

    @property
    def crown_above_eyes(self) -> float:
        return CROWN_RATIO * self.chin_below_eyes

    @property
    def length(self) -> float:
        """Chin to crown, frame px."""
        return self.chin_below_eyes + self.crown_above_eyes

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.left_eye - self.right_eye))


def measure_head(landmarks: Landmarks) -> Head:
    """The head geometry of one face; ValueError when the points cannot describe a face."""
    points = landmarks.points.astype(np.float64)
    right_eye, left_eye = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    dx, dy = left_eye - right_eye
    if dx <= 0 or not np.isfinite(points).all():
        raise ValueError("landmarks do not show a frontal face (eyes not left to right)")
    angle = math.atan2(dy, dx)
    mid = (right_eye + left_eye) / 2
    level = _rotation(-angle)
    chin = level @ (points[CHIN] - mid)
    bridge = level @ (points[NOSE_BRIDGE] - mid)
    mouth = level @ (points[48:60].mean(axis=0) - mid)
    if chin[1] <= 0:
        raise ValueError("landmarks put the chin above the eyes")
    # ISO/IEC 19794-5 centres the face on the midpoint of the mouth and the nose bridge.
    centre_x = float((bridge[0] + mouth[0]) / 2)
    return Head(mid, right_eye, left_eye, math.degrees(angle), float(chin[1]), centre_x)


@dataclass(frozen=True)
class Placement:
    """Frame -> output: `matrix` (2x3) maps frame px to output px; `size` is (width, height)."""

    matrix: np.ndarray
    size: tuple[int, int]
    scale: float  # output px per frame px
    head_ratio: float  # chin-to-crown / height, as placed
    eye_line_from_bottom: float  # fraction of the height, as placed

    def corners_in_frame(self) -> np.ndarray:
        """The output rectangle's corners (4, 2) in frame px: TL, TR, BR, BL."""
        width, height = self.size
        inverse = _invert(self.matrix)
        corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
        return corners @ inverse[:, :2].T + inverse[:, 2]

    def apply(self, points: np.ndarray) -> np.ndarray:
        return points @ self.matrix[:, :2].T + self.matrix[:, 2]


def target_eye_line(fmt: TokenFormat, head_ratio: float) -> float:
    """The eye line's height above the bottom (fraction of the height): the middle of the
    format's range, lowered while the crown would keep less than TOP_SHARE of the free height
    above it (eyes sit at mid-head, so a high eye line can push the crown off the top), but
    never below the format's minimum."""
    middle = (fmt.eye_line_from_bottom_min + fmt.eye_line_from_bottom_max) / 2
    crown_part = head_ratio * CROWN_RATIO / (1 + CROWN_RATIO)
    highest = 1 - TOP_SHARE * (1 - head_ratio) - crown_part
    return max(fmt.eye_line_from_bottom_min, min(middle, highest))


def place(head: Head, fmt: TokenFormat) -> Placement:
    """Level, scale and shift so the head is the format's middle head ratio, its midline
    centred and its eye line at `target_eye_line`."""
    width, height = format_size_px(fmt)
    head_ratio = (fmt.head_min_ratio + fmt.head_max_ratio) / 2
    scale = head_ratio * height / head.length
    eye_line = target_eye_line(fmt, head_ratio)
    offset = np.array([width / 2 - scale * head.centre_x, height * (1 - eye_line)])
    return Placement(_similarity(head, scale, offset), (width, height), scale, head_ratio, eye_line)


def place_token_frontal(head: Head, width: int) -> Placement:
    """The ISO/IEC 19794-5 Token Frontal: the eye centres land exactly on the standard's
    positions, `width` px wide (at least TOKEN_MIN_WIDTH)."""
    width = max(int(width), TOKEN_MIN_WIDTH)
    height = round(width / TOKEN_ASPECT)
    scale = (TOKEN_EYE_X[1] - TOKEN_EYE_X[0]) * width / head.eye_distance
    offset = np.array([width * sum(TOKEN_EYE_X) / 2, TOKEN_EYE_Y * width])
    ratio = scale * head.length / height
    eye_line = 1 - TOKEN_EYE_Y * width / height
    return Placement(_similarity(head, scale, offset), (width, height), scale, ratio, eye_line)


def _similarity(head: Head, scale: float, offset: np.ndarray) -> np.ndarray:
    """Frame px -> output px: rotate about the eyes' midpoint by -roll, scale, then `offset`
    is where the levelled origin (the eyes' midpoint) lands."""
    linear = scale * _rotation(-math.radians(head.roll_deg))
    matrix = np.empty((2, 3))
    matrix[:, :2] = linear
    matrix[:, 2] = offset - linear @ head.eye_mid
    return matrix


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _invert(matrix: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, (-linear @ matrix[:, 2])[:, None]])


def pick_format(token: TokenConfig, name: str | None = None) -> tuple[str, TokenFormat]:
    """(name, format): the named one, or [token] default_format; ConfigError lists the known."""
    name = name or token.default_format
    if name not in token.formats:
        known = ", ".join(sorted(token.formats))
        raise ConfigError(f"unknown token format {name!r}; [token.formats] has {known}")
    return name, token.formats[name]


def outside_share(placement: Placement, frame_size: tuple[int, int]) -> dict[str, float]:
    """How far the output's rectangle reaches past each frame edge, as a share of the crop's
    height in the frame (0 inside): keys left/right/top/bottom in image terms."""
    width, height = frame_size
    corners = placement.corners_in_frame()
    crop_height = placement.size[1] / placement.scale
    reach = {
        "left": -corners[:, 0].min(),
        "right": corners[:, 0].max() - width,
        "top": -corners[:, 1].min(),
        "bottom": corners[:, 1].max() - height,
    }
    return {side: round(max(float(value), 0.0) / crop_height, 4) for side, value in reach.items()}
