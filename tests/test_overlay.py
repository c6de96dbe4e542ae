"""The framing guide the console draws: the passport crop and the head oval, on the preview."""

from __future__ import annotations

import numpy as np

from kiosk.config import TokenConfig
from kiosk.runtime.token.geometry import pick_format
from kiosk.service.console.app import draw_overlay
from kiosk.service.overlay import overlay_of


def test_guide_frames_the_face_and_is_drawn(pipeline, portrait: np.ndarray) -> None:
    verdict, analysis = pipeline.check(portrait)
    _, fmt = pick_format(TokenConfig())
    overlay = overlay_of(verdict, analysis, fmt)
    guide = overlay.guide
    assert guide is not None
    x0, y0, x1, y1 = analysis.face.box
    crop = np.array(guide.crop)
    assert crop[:, 0].min() < x0 and crop[:, 0].max() > x1  # the crop is wider than the face
    cx, cy = guide.oval_centre
    assert x0 < cx < x1 and y0 - (y1 - y0) < cy < y1  # the head oval sits on the face
    half_width, half_height = guide.oval_axes
    assert half_height > half_width > 0.3 * (x1 - x0)
    drawn = draw_overlay(portrait, overlay)
    assert (drawn != portrait).any()
    assert overlay_of(verdict, analysis).guide is None  # no format: no guide
