"""Background: plain and uniform around the head (ICAO Doc 9303 part 3: a plain, light-coloured
background without pattern or shadow; ISO/IEC 19794-5 Annex: uniform background).

The ring between 1.25x and 1.7x an ellipse around the head (from the landmarks: jaw width, eye
line to chin, crown as far above the eyes as the chin is below, hair included), down to mouth
height so that shoulders do not count, is read on a copy where the eye distance is 24 px:
- `background_plain`: the share of edge pixels (Canny) in the ring: a pattern or texture;
- `background_uniform`: the colour standard deviation in the ring (RGB, 0-255): objects, shadows.
When less than a quarter of the ring is in the frame (a tight crop) there is nothing to judge: the
value is null and the check passes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from kiosk.contract.reasons import BACKGROUND_NOT_PLAIN
from kiosk.runtime.checks.base import CheckResult, MeasureCheck
from kiosk.runtime.checks.geometry import eye_centres, per_frame
from kiosk.runtime.vision.analysis import Analysis

RING = (1.25, 1.7)  # inner and outer ring, as multiples of the head ellipse
EYE_PX = 24.0  # eye distance in the copy the ring is read on
MIN_COVERAGE = 0.25  # share of the ring that must be inside the frame


@per_frame
def background_ring(analysis: Analysis) -> tuple[np.ndarray, np.ndarray] | None:
    """(RGB copy, ring mask) of the background around the head, or None when out of view."""
    right, left = eye_centres(analysis)
    points = analysis.landmarks.points
    distance = max(float(np.linalg.norm(left - right)), 1.0)
    scale = min(1.0, EYE_PX / distance)
    height, width = analysis.rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    across = (left - right) / distance  # unit vector along the eye line
    down = np.array([-across[1], across[0]])  # towards the chin
    middle = (right + left) / 2
    chin = float((points[8] - middle) @ down)
    mouth = float((points[48:68].mean(axis=0) - middle) @ down)
    half_width = 0.6 * float(np.linalg.norm(points[16] - points[0]))
    centre = middle - down * 0.05 * chin  # crown 1.1 x chin above the eyes, chin below
    axes = np.array([half_width, 1.05 * chin])
    # How much of the ring lies in the frame: sample it in the head's own axes.
    theta, radius = np.meshgrid(np.linspace(0, 2 * np.pi, 72), np.linspace(*RING, 4))
    u, v = axes[0] * radius * np.cos(theta), axes[1] * radius * np.sin(theta)
    samples = centre + np.outer(u.ravel(), across) + np.outer(v.ravel(), down)
    kept = ((samples - middle) @ down) < mouth
    inside = (samples[:, 0] >= 0) & (samples[:, 0] < width)
    inside &= (samples[:, 1] >= 0) & (samples[:, 1] < height)
    if inside[kept].sum() < MIN_COVERAGE * kept.sum():
        return None
    small = cv2.resize(analysis.rgb, size, interpolation=cv2.INTER_LINEAR)
    ring = np.zeros(small.shape[:2], np.uint8)
    angle = math.degrees(math.atan2(across[1], across[0]))
    for factor, fill in ((RING[1], 1), (RING[0], 0)):
        box = (tuple(float(c) for c in centre * scale), tuple(2 * axes * factor * scale), angle)
        cv2.ellipse(ring, box, fill, -1)
    ys, xs = np.mgrid[0 : small.shape[0], 0 : small.shape[1]]
    offset = (xs - middle[0] * scale) * down[0] + (ys - middle[1] * scale) * down[1]
    ring[offset >= mouth * scale] = 0
    return small, ring.astype(bool)


class BackgroundPlain(MeasureCheck):
    name = "background_plain"
    reason = BACKGROUND_NOT_PLAIN
    bound = "max"
    limit_key = "max_background_edges"

    def measure(self, analysis: Analysis) -> CheckResult:
        found = background_ring(analysis)
        if found is None:
            return self.result(float("nan"))
        small, ring = found
        edges = cv2.Canny(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), 40, 120)
        return self.result(float(np.mean(edges[ring] > 0)))


class BackgroundUniform(MeasureCheck):
    name = "background_uniform"
    reason = BACKGROUND_NOT_PLAIN
    bound = "max"
    limit_key = "max_background_colour_std"

    def measure(self, analysis: Analysis) -> CheckResult:
        found = background_ring(analysis)
        if found is None:
            return self.result(float("nan"))
        small, ring = found
        pixels = small[ring].astype(np.float32)
        return self.result(float(np.sqrt(pixels.var(axis=0).mean())))
