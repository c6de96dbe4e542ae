"""A camera's own JPEG-history threshold (`kiosk calibrate`), stored beside the capture data.

The shipped threshold was chosen on scanned and test-set pictures; a kiosk's negatives are its
own camera's frames, whose denoising and sharpening can look JPEG-like to the detector
(reports/jpeg_forensics/calibration.md). So the kiosk measures its camera: N stills scored like
captures, the threshold set just above all but the allowed share of them. The file names the
model's sha256: a new model makes the calibration stale, and the manifest's threshold applies
again (with a warning) until the camera is calibrated anew.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kiosk.contract.errors import ConfigError, InputError
from kiosk.contract.fileio import write_atomically

log = logging.getLogger(__name__)

THRESHOLD_MIN, THRESHOLD_MAX = 0.01, 0.99  # the manifest's band


@dataclass(frozen=True)
class Calibration:
    camera: str
    model_sha256: str
    frames: int
    false_alarm_rate: float
    threshold: float
    max_score: float
    created: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, (json.dumps(asdict(self), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> Calibration | None:
        """The stored calibration, None when there is none; ConfigError when it is damaged."""
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            calibration = cls(**data)
            float(calibration.threshold)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"camera calibration {path} is unreadable ({exc}); delete it or run "
                "`kiosk calibrate` again"
            ) from None
        return calibration


def threshold_for(scores: list[float] | np.ndarray, false_alarm_rate: float) -> float:
    """The smallest threshold that flags at most `false_alarm_rate` of `scores` (flagged means
    score >= threshold), clipped to the manifest's band. Needs enough frames to measure that
    rate: at least 1 / rate."""
    scores = np.sort(np.asarray(scores, np.float64))[::-1]
    needed = math.ceil(1 / false_alarm_rate)
    if len(scores) < needed:
        raise InputError(
            f"{len(scores)} frames cannot measure a {false_alarm_rate:.1%} false-alarm rate: "
            f"score at least {needed} (--frames), better 3x that"
        )
    allowed = math.floor(false_alarm_rate * len(scores))
    threshold = float(scores[allowed]) + 1e-6  # the (allowed+1)-th highest is not flagged
    return min(THRESHOLD_MAX, max(THRESHOLD_MIN, round(threshold, 6)))


def new_calibration(
    camera: str, model_sha256: str, scores: list[float], false_alarm_rate: float
) -> Calibration:
    return Calibration(
        camera=camera,
        model_sha256=model_sha256,
        frames=len(scores),
        false_alarm_rate=false_alarm_rate,
        threshold=threshold_for(scores, false_alarm_rate),
        max_score=round(float(max(scores)), 6),
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
