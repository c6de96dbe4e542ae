"""Landmark-geometry measures used as baselines and fusion features (as OFIQ and drowsiness
detectors use them). The eye aspect ratio and OFIQ's mouth opening are the kiosk checks' own code
(kiosk/runtime/checks/), so what is fitted here is what the kiosk computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiosk.runtime.checks.eyes_closed import eye_aspect_ratio
from kiosk.runtime.checks.mouth_open import INNER_LIP_PAIRS
from kiosk.runtime.checks.mouth_open import mouth_opening as ofiq_mouth_opening
from kiosk.runtime.vision.types import Landmarks

__all__ = [
    "EAR_CLOSED",
    "EAR_OPEN",
    "OFIQ_CLOSED",
    "OFIQ_OPEN",
    "eye_aspect_ratio",
    "inner_lip_gap",
    "mouth_opening",
    "ofiq_mouth_opening",
]

# An eye on manual landmarks: closed at most EAR_CLOSED, open at least EAR_OPEN, in between
# neither (half-open, lowered, squinting): the faces68 eye labels of training and evaluation.
EAR_CLOSED, EAR_OPEN = 0.10, 0.22
# A mouth by OFIQ's opening: open above OFIQ_OPEN, closed below OFIQ_CLOSED, in between neither
# (faces68_measures' rule, the hidden mouth_helen labels').
OFIQ_OPEN, OFIQ_CLOSED = 0.06, 0.01


def mouth_opening(landmarks: Landmarks) -> float:
    """Mean inner-lip gap over the eye-midpoint-to-chin distance: the baseline feature of every
    mouth crop (OFIQ's measure, the kiosk's and the labels', takes the widest gap instead)."""
    p = landmarks.points
    gap = np.mean([np.linalg.norm(p[a] - p[b]) for a, b in INNER_LIP_PAIRS])
    eye_mid = p[36:48].mean(axis=0)
    return float(gap / max(np.linalg.norm(p[8] - eye_mid), 1e-6))


def inner_lip_gap(landmarks: Landmarks) -> float:
    """Mean inner-lip gap over the mouth width (corners 48-54)."""
    p = landmarks.points
    gap = np.mean([np.linalg.norm(p[a] - p[b]) for a, b in INNER_LIP_PAIRS])
    return float(gap / max(np.linalg.norm(p[54] - p[48]), 1e-6))


def read_pts(path: Path) -> np.ndarray:
    """The 68 points of a 300-W `.pts` file, 0-based (the format is 1-based)."""
    body = path.read_text().split("{")[1].split("}")[0]
    return np.array(body.split(), np.float32).reshape(68, 2) - 1.0
