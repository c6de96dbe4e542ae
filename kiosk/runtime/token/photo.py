"""`make_token`: the passport-ready photo and the ISO Token Frontal image from one still."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from kiosk.config import TokenConfig, TokenFormat
from kiosk.contract.errors import InputError
from kiosk.runtime.forensics.sr import SrCheck
from kiosk.runtime.token.geometry import (
    measure_head,
    outside_share,
    pick_format,
    place,
    place_token_frontal,
)
from kiosk.runtime.token.render import encode_jpeg, warp
from kiosk.runtime.vision.landmarks import LandmarkPredictor
from kiosk.runtime.vision.types import Box, Landmarks

log = logging.getLogger(__name__)

TOKEN_FRONTAL_WIDTH = 480  # px: 120 px between the eyes, above ICAO's 90 px minimum


@dataclass(frozen=True)
class TokenPhoto:
    """The print-format photo (`jpeg`, at the format's dpi) and the ISO/IEC 19794-5 Token
    Frontal image (`frontal_jpeg`); `geometry` is JSON-ready; `warnings` say what an operator
    should look at (the crop left the frame, the face was enlarged)."""

    format: str
    jpeg: bytes
    frontal_jpeg: bytes
    geometry: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        """What the capture record keeps (the images are stored beside it)."""
        return {"format": self.format, "geometry": self.geometry, "warnings": list(self.warnings)}


def make_token(
    still_rgb: np.ndarray,
    landmarks: Landmarks,
    fmt: TokenFormat,
    format_name: str = "",
    sr: SrCheck | None = None,
    frontal_width: int = TOKEN_FRONTAL_WIDTH,
) -> TokenPhoto:
    """Cut, level and scale the token photo of `fmt` and the Token Frontal image from the
    full-resolution still. `landmarks` must be in the still's pixels (predict them on the
    still inside the rescaled face box: scaling the preview's points up multiplies their
    error). `sr`: the forensic suite's SR check, used when the face is too small for the
    output. InputError when the landmarks cannot place a face."""
    if still_rgb.ndim != 3 or still_rgb.shape[2] != 3:
        raise InputError(f"the still must be RGB (H, W, 3), got shape {still_rgb.shape}")
    try:
        head = measure_head(landmarks)
    except ValueError as exc:
        raise InputError(f"no token photo: {exc}") from None
    placement = place(head, fmt)
    frontal_placement = place_token_frontal(head, frontal_width)
    image, sr_used = warp(still_rgb, placement, sr)
    frontal, frontal_sr = warp(still_rgb, frontal_placement, sr)
    frame_size = (still_rgb.shape[1], still_rgb.shape[0])
    outside = outside_share(placement, frame_size)
    warnings = []
    if any(outside.values()):
        worst = max(outside, key=outside.__getitem__)
        warnings.append(
            f"the crop reaches past the still's {worst} edge by {outside[worst]:.0%} of its "
            "height; there the still's edge pixels are repeated"
        )
    upscale = placement.scale
    if upscale > 1.0:
        how = "super-resolved x4" if sr_used else "enlarged bicubically"
        warnings.append(f"the face was {how} ({upscale:.2f}x) to reach {fmt.dpi} dpi")
    width, height = placement.size
    geometry = {
        "size_px": [width, height],
        "dpi": fmt.dpi,
        "size_mm": [fmt.width_mm, fmt.height_mm],
        "head_ratio": round(placement.head_ratio, 4),
        "eye_line_from_bottom": round(placement.eye_line_from_bottom, 4),
        "roll_corrected_deg": round(head.roll_deg, 2),
        "scale": round(upscale, 4),
        "super_resolved": sr_used,
        "outside_frame": outside,
        "eye_distance_px": round(head.eye_distance * upscale, 1),
        "frontal": {
            "size_px": list(frontal_placement.size),
            "eye_distance_px": round(frontal_placement.size[0] / 4, 1),
            "super_resolved": frontal_sr,
        },
    }
    log.debug("token photo %s: scale %.3f, sr %s", format_name, upscale, sr_used)
    return TokenPhoto(
        format_name,
        encode_jpeg(image, fmt.dpi),
        encode_jpeg(frontal, fmt.dpi),
        geometry,
        warnings,
    )


class TokenCutter:
    """What the capture step needs to cut the token photo from a still: landmarks predicted on
    the still itself (inside the face box mapped from the preview), the configured format, and
    the bundle's SR check for faces too small for the output."""

    def __init__(
        self, landmarks: LandmarkPredictor, token: TokenConfig, sr: SrCheck | None
    ) -> None:
        self.landmarks, self.sr = landmarks, sr
        self.format_name, self.format = pick_format(token)

    def __call__(self, still_rgb: np.ndarray, box: Box) -> TokenPhoto:
        """InputError when no token photo can be placed (the capture is then kept without)."""
        gray = cv2.cvtColor(still_rgb, cv2.COLOR_RGB2GRAY)
        landmarks = self.landmarks.predict(gray, box)
        return make_token(still_rgb, landmarks, self.format, self.format_name, sr=self.sr)
