"""Face detector backends behind one method, chosen by name ([detector] backend).

A backend is anything with `detect(rgb) -> list[Face]` (faces sorted by confidence, boxes
(x0, y0, x1, y1) clipped to the frame, MTCNN's 5-keypoint order). `DETECTORS` is the explicit
registry: one factory per name, each building its backend once from the verified bundle.
YuNet is the default: fewest misses on real faces, masked ones included, and the fastest
(reports/detectors/README.md); each backend is paired with the landmark model trained on its
boxes (kiosk.runtime.vision.landmarks.landmark_predictor).

`[detector] fallback = "blazeface"` runs MediaPipe's BlazeFace (short range) only on frames where
YuNet finds no face: it finds about half of the masked faces YuNet misses, and since frames where
YuNet found a face are untouched, no verdict chosen on YuNet's rows changes. Its boxes are moved
to YuNet's geometry (`YUNET_BOX_MAPS`) so the landmark model paired with YuNet starts from the box
shape it was trained on. Its model is read and hash-checked at start (a bad bundle still fails
there), its interpreter built at the first frame without a face (`OnFirstUse`): `kiosk check` on
a photo with a face never pays for it (~5-14 ms, issue 16). `fallback = "blazeface_all"` goes on
where the short model finds nothing either: BlazeFace's full-range model, then the short model
on the mirrored frame (more masked faces; reports/detectors).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import numpy as np

from kiosk.contract.errors import ConfigError, ModelError
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.blazeface import (
    ANCHOR_LAYOUTS,
    BLAZEFACE_FULL,
    BLAZEFACE_SHORT,
    BlazeFace,
    BlazeFaceSettings,
)
from kiosk.runtime.vision.mtcnn_lite import MtcnnLite
from kiosk.runtime.vision.types import Face
from kiosk.runtime.vision.yunet import Yunet, YunetSettings

log = logging.getLogger(__name__)

DEFAULT_BACKEND = "yunet"
# BlazeFace box -> YuNet box (dx, dy, sx, sy; BlazeFaceSettings.box_map) per BlazeFace model: the
# median over faces both detectors find on faces68's train split (`bench/face_miss.py
# --fit-box-map`).
YUNET_BOX_MAPS: dict[str, tuple[float, float, float, float]] = {
    BLAZEFACE_SHORT: (-0.01, -0.101, 0.949, 1.199),
    BLAZEFACE_FULL: (-0.006, -0.044, 0.899, 1.135),
}


class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Face]: ...


def _mtcnn(registry: ModelRegistry, settings: Any, num_threads: int) -> FaceDetector:
    # The fallback is a YuNet option (its boxes are mapped to YuNet's; the config refuses it with
    # backend = "mtcnn"): a caller that asks for MTCNN over a YuNet config gets MTCNN alone.
    return MtcnnLite(registry, settings, num_threads=num_threads)


class Cascade:
    """The first detector's faces; each next one looks only where every one before it found
    none, so a frame an earlier detector handles is never changed and the later ones cost time
    only on frames without a face."""

    def __init__(self, *detectors: FaceDetector) -> None:
        self.detectors = detectors

    def detect(self, rgb: np.ndarray) -> list[Face]:
        for index, detector in enumerate(self.detectors):
            faces = detector.detect(rgb)
            if faces:
                if index:
                    log.debug("fallback detector %d found %d face(s)", index, len(faces))
                return faces
        return []


class Mirrored:
    """`blazeface` looking at the left-right mirrored frame (BlazeFace.detect's `mirrored`), as
    a pass of its own that shares the model's interpreter."""

    def __init__(self, blazeface: BlazeFace | OnFirstUse) -> None:
        self.blazeface = blazeface

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return self.blazeface.detect(rgb, mirrored=True)


class OnFirstUse:
    """BlazeFace built by `build` at its first `detect()`: the fallback may never run, so its
    interpreter costs nothing at start."""

    def __init__(self, build: Callable[[], BlazeFace]) -> None:
        self._build = build
        self.built: BlazeFace | None = None

    def detect(self, rgb: np.ndarray, mirrored: bool = False) -> list[Face]:
        if self.built is None:
            self.built = self._build()
        return self.built.detect(rgb, mirrored)


def blazeface_fallback(
    registry: ModelRegistry, min_face_size: int, num_threads: int = 1, model: str = BLAZEFACE_SHORT
) -> OnFirstUse:
    """BlazeFace (`model`: short or full range) at MediaPipe's own thresholds, boxes in YuNet's
    geometry. The model is verified now (ModelError at start, a listed input size without an
    anchor layout too), the interpreter built on first use."""
    data = registry.verified_bytes(model)
    shape = registry.entry(model).input_shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] not in ANCHOR_LAYOUTS:
        raise ModelError(
            f"manifest entry {model!r}: input {list(shape)} is not a square BlazeFace "
            f"input of {sorted(ANCHOR_LAYOUTS)} px; redeploy the bundle"
        )
    settings = BlazeFaceSettings(min_face_size=min_face_size, box_map=YUNET_BOX_MAPS[model])
    return OnFirstUse(partial(BlazeFace, data, settings, num_threads=num_threads))


def _yunet(registry: ModelRegistry, settings: Any, num_threads: int) -> FaceDetector:
    if settings is None:
        return Yunet(registry, YunetSettings(), num_threads=num_threads)
    yunet = YunetSettings(
        score_threshold=settings.yunet_score_threshold,
        nms_threshold=settings.yunet_nms_threshold,
        min_face_size=settings.min_face_size,
        detect_width=settings.detect_width,
    )
    detector = Yunet(registry, yunet, num_threads=num_threads)
    fallback = getattr(settings, "fallback", "none")
    if fallback == "none":
        return detector
    short = blazeface_fallback(registry, settings.min_face_size, num_threads)
    if fallback == "blazeface":
        return Cascade(detector, short)
    full = blazeface_fallback(registry, settings.min_face_size, num_threads, BLAZEFACE_FULL)
    return Cascade(detector, short, full, Mirrored(short))  # "blazeface_all"


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
