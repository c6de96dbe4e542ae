"""What the console draws over the preview, built from a frame's verdict and analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kiosk.config import TokenFormat
from kiosk.runtime.pipeline import ACCEPT, Verdict
from kiosk.runtime.token.geometry import Head, Placement, measure_head, place
from kiosk.runtime.vision.analysis import Analysis
from kiosk.runtime.vision.types import LANDMARK_GROUPS

Box = tuple[float, float, float, float]


HEAD_WIDTH_RATIO = 0.72  # head breadth over chin-to-crown length (Farkas' canon, as docs/token.md)


@dataclass(frozen=True)
class Guide:
    """The framing guide in preview pixels: where the passport crop of the configured format
    falls (`crop`: TL, TR, BR, BL) and the head oval the applicant should fill inside it."""

    crop: tuple[tuple[float, float], ...]
    oval_centre: tuple[float, float]
    oval_axes: tuple[float, float]  # half width, half height
    oval_angle_deg: float


@dataclass(frozen=True)
class Overlay:
    """Boxes in preview pixels, colour by verdict; the framing guide when a face was measured."""

    passing: bool
    faces: tuple[Box, ...] = ()
    regions: tuple[tuple[str, Box], ...] = ()
    guide: Guide | None = None


def framing_guide(head: Head, placement: Placement) -> Guide:
    """The crop's corners and the target head oval (crown to chin at the format's head ratio,
    on the crop's midline), both mapped from the output back into preview pixels."""
    width, height = placement.size
    eye_y = height * (1.0 - placement.eye_line_from_bottom)
    crown = eye_y - head.crown_above_eyes * placement.scale
    chin = eye_y + head.chin_below_eyes * placement.scale
    centre_out = np.array([[width / 2.0, (crown + chin) / 2.0]])
    inverse = np.linalg.inv(np.vstack([placement.matrix, [0.0, 0.0, 1.0]]))[:2]
    centre = centre_out @ inverse[:, :2].T + inverse[:, 2]
    half_height = (chin - crown) / 2.0 / placement.scale
    corners = tuple(
        (round(float(x), 1), round(float(y), 1)) for x, y in placement.corners_in_frame()
    )
    return Guide(
        crop=corners,
        oval_centre=(round(float(centre[0, 0]), 1), round(float(centre[0, 1]), 1)),
        oval_axes=(round(half_height * HEAD_WIDTH_RATIO, 1), round(half_height, 1)),
        oval_angle_deg=round(head.roll_deg, 1),
    )


def overlay_of(verdict: Verdict, analysis: Analysis, token: TokenFormat | None = None) -> Overlay:
    faces = tuple(_rounded(face.box) for face in analysis.faces)
    regions = []
    if analysis.landmarks is not None:
        for name in ("right_eye", "left_eye", "outer_lips"):
            points = analysis.landmarks.points[LANDMARK_GROUPS[name]]
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            pad = 0.25 * max(x1 - x0, y1 - y0)
            box = _rounded((x0 - pad, y0 - pad, x1 + pad, y1 + pad))
            regions.append(("mouth" if name == "outer_lips" else name, box))
    guide = None
    if token is not None and analysis.landmarks is not None:
        try:
            head = measure_head(analysis.landmarks)
        except ValueError:  # landmarks that place no face: nothing to guide with
            head = None
        if head is not None:
            guide = framing_guide(head, place(head, token))
    return Overlay(verdict.decision == ACCEPT, faces, tuple(regions), guide)


def _rounded(box: Any) -> Box:
    x0, y0, x1, y1 = (round(float(v), 1) for v in box)
    return x0, y0, x1, y1
