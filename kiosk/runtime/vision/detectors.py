"""Face detector backends behind one method, chosen by name ([detector] backend).

A backend is anything with `detect(rgb) -> list[Face]` (faces sorted by confidence, boxes
(x0, y0, x1, y1) clipped to the frame, MTCNN's 5-keypoint order). `DETECTORS` is the explicit
registry: one factory per name, each building its backend once from the verified bundle.
YuNet is the default: fewest misses on real faces, masked ones included, and the fastest
(reports/detectors/README.md); each backend is paired with the landmark model trained on its
boxes (kiosk.runtime.vision.landmarks.landmark_predictor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from kiosk.contract.errors import ConfigError
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.mtcnn_lite import MtcnnLite
from kiosk.runtime.vision.types import Face
from kiosk.runtime.vision.yunet import Yunet, YunetSettings

DEFAULT_BACKEND = "yunet"


class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Face]: ...


def _mtcnn(registry: ModelRegistry, settings: Any, num_threads: int) -> FaceDetector:
    return MtcnnLite(registry, settings, num_threads=num_threads)


def _yunet(registry: ModelRegistry, settings: Any, num_threads: int) -> FaceDetector:
    if settings is None:
        return Yunet(registry, YunetSettings(), num_threads=num_threads)
    yunet = YunetSettings(
        score_threshold=settings.yunet_score_threshold,
        nms_threshold=settings.yunet_nms_threshold,
        min_face_size=settings.min_face_size,
        detect_width=settings.detect_width,
    )
    return Yunet(registry, yunet, num_threads=num_threads)


DETECTORS: dict[str, Callable[[ModelRegistry, Any, int], FaceDetector]] = {
    "mtcnn": _mtcnn,
    "yunet": _yunet,
}


def make_detector(
    backend: str, registry: ModelRegistry, settings: Any = None, num_threads: int = 1
) -> FaceDetector:
    """The backend `backend` built from `registry` with the [detector] `settings` (None: the
    backend's defaults). ConfigError names the known backends."""
    try:
        factory = DETECTORS[backend]
    except KeyError:
        raise ConfigError(
            f"[detector] backend = {backend!r} is unknown; use one of: {', '.join(DETECTORS)}"
        ) from None
    return factory(registry, settings, num_threads)
