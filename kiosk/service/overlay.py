"""What the console draws over the preview, built from a frame's verdict and analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiosk.runtime.pipeline import ACCEPT, Verdict
from kiosk.runtime.vision.analysis import Analysis
from kiosk.runtime.vision.types import LANDMARK_GROUPS

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Overlay:
    """Boxes in preview pixels, colour by verdict."""

    passing: bool
    faces: tuple[Box, ...] = ()
    regions: tuple[tuple[str, Box], ...] = ()


def overlay_of(verdict: Verdict, analysis: Analysis) -> Overlay:
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
    return Overlay(verdict.decision == ACCEPT, faces, tuple(regions))


def _rounded(box: Any) -> Box:
    x0, y0, x1, y1 = (round(float(v), 1) for v in box)
    return x0, y0, x1, y1
