"""JPEG-history check: does a final capture carry traces of JPEG compression?

A capture straight from the camera's raw stream should not. One that does hints at a printed or
re-photographed picture, or an injected file; the hardened detector also catches JPEG traces
laundered by dithering (Stamm et al.) or by an anti-forensic GAN (Luo et al.), see
docs/jpeg_forensics.md.

How a whole capture is scored:
1. Grayscale by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B), which is the Y channel that JPEG
   compresses with its luminance table, and what the detector was trained on.
2. Non-overlapping patches (the model's side, 64 px) on a grid starting at the image origin. A
   JPEG's 8x8 block grid also starts there, so every patch sees whole blocks in the phase the
   detector learnt. At most MAX_PATCHES patches: larger captures use an evenly thinned grid.
3. Pooling: the mean of the top quarter of patch scores. Flat patches (sky, walls, saturated
   areas) keep no JPEG trace, so a plain mean or median would let a JPEG with large flat regions
   through; the max alone would turn one unlucky patch of an honest capture into an alarm. The top
   quarter catches a JPEG whose textured part covers at least a quarter of the frame.
The capture is flagged when the pooled score reaches the manifest threshold (chosen on the
validation DET curve at 2 % false alarms on uncompressed patches).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kiosk.config import Config
from kiosk.contract.errors import InputError, ModelError
from kiosk.runtime.forensics.calibration import Calibration
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.imageio import Luma
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.tflite_io import BinaryClassifier

log = logging.getLogger(__name__)

MODEL_NAME = "jpeg_history"
MAX_PATCHES = 400
TOP_FRACTION = 0.25


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an (H, W, 3) uint8 RGB image; (H, W) images pass through."""
    if rgb.ndim == 2:
        return rgb
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def patch_corners(height: int, width: int, patch: int, limit: int = MAX_PATCHES) -> list[tuple]:
    """Top-left corners (y, x) of the non-overlapping patch grid from the origin, thinned
    evenly to at most `limit` patches. Raises InputError when not even one patch fits."""
    rows, cols = height // patch, width // patch
    if rows == 0 or cols == 0:
        raise InputError(
            f"image {width}x{height} is smaller than one {patch}x{patch} patch of the JPEG "
            "detector; use the full-resolution capture"
        )
    keep = min(1.0, math.sqrt(limit / (rows * cols)))
    row_ids = np.unique(np.linspace(0, rows - 1, max(1, int(rows * keep))).round().astype(int))
    col_ids = np.unique(np.linspace(0, cols - 1, max(1, int(cols * keep))).round().astype(int))
    return [(int(r) * patch, int(c) * patch) for r in row_ids for c in col_ids]


def pool(scores: np.ndarray, top_fraction: float = TOP_FRACTION) -> float:
    """Mean of the highest `top_fraction` of the patch scores (at least one)."""
    count = max(1, math.ceil(len(scores) * top_fraction))
    return float(np.mean(np.sort(scores)[-count:]))


class JpegHistoryCheck:
    """Forensic check "jpeg": pooled patch scores of an int8 JPEG detector."""

    key = "jpeg"
    needs_face = False

    def __init__(
        self,
        content: bytes,
        threshold: float,
        num_threads: int = 1,
        threshold_source: str = "manifest",
    ) -> None:
        self.classifier = BinaryClassifier(content, num_threads=num_threads)
        self.patch = self.classifier.input_size[0]
        self.threshold = threshold
        self.threshold_source = threshold_source

    def patch_scores(self, gray: np.ndarray | Luma) -> np.ndarray:
        """Scores of the patch grid of a grayscale uint8 image (see patch_corners); a `Luma`
        hands out one patch at a time."""
        corners = patch_corners(*gray.shape, self.patch)
        size = self.patch
        return np.array(
            [self.classifier.score(gray[y : y + size, x : x + size]) for y, x in corners],
            np.float32,
        )

    def run(self, capture: Capture, artifacts: Artifacts) -> dict[str, Any]:
        del artifacts  # nothing drawn
        gray = capture.luma() if capture.luma is not None else to_gray(capture.rgb)
        scores = self.patch_scores(gray)
        score = pool(scores)
        return {
            "score": round(score, 6),
            "threshold": self.threshold,
            "flagged": score >= self.threshold,
            "patches": len(scores),
            "max_patch_score": round(float(scores.max()), 6),
            "threshold_source": self.threshold_source,
        }


def make_jpeg_check(registry: ModelRegistry, config: Config) -> JpegHistoryCheck | None:
    """The check for the manifest's `jpeg_history` model, or None when it is not listed."""
    if MODEL_NAME not in registry.entries:
        return None
    entry = registry.entry(MODEL_NAME)
    if entry.threshold is None:
        raise ModelError(f"manifest entry {MODEL_NAME!r} has no threshold; re-run the export")
    content = registry.verified_bytes(MODEL_NAME)
    threshold, source = entry.threshold, "manifest"
    calibration = Calibration.load(Path(config.forensics.jpeg_calibration))
    if calibration is not None and calibration.model_sha256 == entry.sha256:
        threshold, source = calibration.threshold, f"camera calibration {calibration.created}"
    elif calibration is not None:
        log.warning(
            "camera calibration %s was made for another jpeg_history model: using the "
            "manifest threshold; run `kiosk calibrate` again",
            config.forensics.jpeg_calibration,
        )
    return JpegHistoryCheck(content, threshold, config.models.num_threads, source)
