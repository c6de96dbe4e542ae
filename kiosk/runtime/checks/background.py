"""Background: plain and uniform around the head (ICAO Doc 9303 part 3: a plain, light-coloured
background without pattern or shadow; ISO/IEC 19794-5 Annex: uniform background).

The ring between 1.25x and 1.7x an ellipse around the head (from the landmarks: jaw width, eye
line to chin, crown as far above the eyes as the chin is below, hair included), down to mouth
height so that shoulders do not count, is read on a copy where the eye distance is 16 px:
- `background_plain`: the share of edge pixels (3x3 Sobel |dx| + |dy|) in the ring: a pattern or
  texture;
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
EYE_PX = 16.0  # eye distance in the copy the ring is read on
MIN_COVERAGE = 0.25  # share of the ring that must be inside the frame
# Where the ring is sampled to see how much of it is in the frame: unit-ellipse points.
_THETA, _RADIUS = np.meshgrid(np.linspace(0, 2 * np.pi, 72), np.linspace(*RING, 4))
RING_SAMPLES = np.stack([(_RADIUS * np.cos(_THETA)).ravel(), (_RADIUS * np.sin(_THETA)).ravel()])
EDGE = 96  # |dx| + |dy| of the 3x3 Sobel (saturating at 255 each) that counts as an edge


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
    u, v = axes[0] * RING_SAMPLES[0], axes[1] * RING_SAMPLES[1]
    samples = centre + np.outer(u, across) + np.outer(v, down)
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
    # Below mouth height: a band as wide and deep as the frame, cleared in one polygon.
    reach = 4.0 * max(size)
    edge = (middle + down * mouth) * scale
    below = [edge - across * reach, edge + across * reach]
    below += [below[1] + down * reach, below[0] + down * reach]
    cv2.fillConvexPoly(ring, np.round(np.array(below)).astype(np.int32), 0)
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
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        gx = cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3)
        gy = cv2.Sobel(gray, cv2.CV_16S, 0, 1, ksize=3)
        strength = cv2.add(cv2.convertScaleAbs(gx), cv2.convertScaleAbs(gy))
        return self.result(float(np.mean(strength[ring] >= EDGE)))


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
