"""MTCNN face detection (Zhang et al. 2016) on LiteRT, with numpy/OpenCV pre/post-processing.

The cascade mirrors the `mtcnn` PyPI package (its weights, exported by `training/export_mtcnn.py`):
image pyramid -> PNet proposals -> NMS -> RNet refinement -> ONet boxes + 5 keypoints. The
`mtcnn` package remains the reference; `tests/test_mtcnn_parity.py` holds the two together.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import cv2
import numpy as np

from kiosk.config import MtcnnSettings
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.types import Face

PNET, RNET, ONET = "mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet"


class _Net:
    """A TFLite net whose input is resized on demand; interpreters are cached per input shape."""

    def __init__(self, content: bytes, num_threads: int, cache_size: int = 24) -> None:
        self._content = content
        self._num_threads = num_threads
        self._cache: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._cache_size = cache_size

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        interpreter = self._interpreter(batch.shape)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]

    def _interpreter(self, shape: tuple[int, ...]) -> Any:
        interpreter = self._cache.get(shape)
        if interpreter is not None:
            self._cache.move_to_end(shape)
            return interpreter
        from kiosk.runtime.models.litert import make_interpreter

        interpreter = make_interpreter(self._content, num_threads=self._num_threads)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], list(shape))
        interpreter.allocate_tensors()
        self._cache[shape] = interpreter
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return interpreter


def _by_last_dim(outputs: list[np.ndarray], size: int) -> np.ndarray:
    """TFLite does not keep Keras' output order; the heads differ in their last dimension."""
    return next(o for o in outputs if o.shape[-1] == size)


class MtcnnLite:
    """`detect(rgb)` -> faces sorted by confidence. Interpreters are created once and reused."""

    def __init__(
        self,
        registry: ModelRegistry,
        settings: MtcnnSettings | None = None,
        num_threads: int = 1,
    ) -> None:
        self.settings = settings or MtcnnSettings()
        self._pnet = _Net(registry.verified_bytes(PNET), num_threads)
        self._rnet = _Net(registry.verified_bytes(RNET), num_threads, cache_size=4)
        self._onet = _Net(registry.verified_bytes(ONET), num_threads, cache_size=4)

    @classmethod
    def from_models_dir(cls, models_dir: Any, **kwargs: Any) -> MtcnnLite:
        return cls(ModelRegistry(models_dir), **kwargs)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image (H, W, 3), boxes clipped to the image."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB image of shape (H, W, 3), got {rgb.shape}")
        image = (rgb.astype(np.float32) - 127.5) / 128.0
        boxes = self._stage_pnet(image)
        if len(boxes):
            boxes = self._stage_rnet(image, boxes)
        if len(boxes):
            boxes, keypoints = self._stage_onet(image, boxes)
        else:
            keypoints = np.empty((0, 5, 2), np.float32)
        height, width = rgb.shape[:2]
        faces = []
        for row, points in zip(boxes, keypoints, strict=True):
            x0, x1 = np.clip(row[[0, 2]], 0, width - 1)
            y0, y1 = np.clip(row[[1, 3]], 0, height - 1)
            box = (float(x0), float(y0), float(x1), float(y1))
            faces.append(Face(box=box, confidence=float(row[4]), keypoints=points))
        return faces

    def _scales(self, height: int, width: int) -> np.ndarray:
        s = self.settings
        count = round(-(np.log(min(height, width) / 12) / np.log(s.scale_factor) + 1))
        return (12 / s.min_face_size) * s.scale_factor ** np.arange(max(count, 0))

    def _stage_pnet(self, image: np.ndarray) -> np.ndarray:
        s = self.settings
        height, width = image.shape[:2]
        proposals = []
        for scale in self._scales(height, width):
            size = (int(width * scale), int(height * scale))
            if min(size) < 12:
                continue
            scaled = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            outputs = self._pnet(scaled[None])
            regression = _by_last_dim(outputs, 4)[0]
            probability = _by_last_dim(outputs, 2)[0, :, :, 1]
            boxes = _pnet_boxes(regression, probability, s.threshold_pnet) / [
                scale,
                scale,
                scale,
                scale,
                1.0,
            ]
            proposals.append(_nms(boxes, s.nms_pnet_scale))
        if not proposals:
            return np.empty((0, 5), np.float32)
        boxes = np.concatenate(proposals)
        return _square(_nms(_by_score(boxes), s.nms_pnet_all))

    def _stage_rnet(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        s = self.settings
        outputs = self._rnet(_crop_patches(image, boxes, 24))
        boxes = boxes.copy()
        boxes[:, 4] = _by_last_dim(outputs, 2)[:, 1]
        boxes = _regress(boxes, _by_last_dim(outputs, 4))
        boxes = boxes[boxes[:, 4] > s.threshold_rnet]
        return _square(_nms(_by_score(boxes), s.nms_rnet))

    def _stage_onet(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.settings
        outputs = self._onet(_crop_patches(image, boxes, 48))
        raw = _by_last_dim(outputs, 10)
        w = boxes[:, 2:3] - boxes[:, 0:1] + 1
        h = boxes[:, 3:4] - boxes[:, 1:2] + 1
        xs = w * raw[:, 0:5] + boxes[:, 0:1] - 1
        ys = h * raw[:, 5:10] + boxes[:, 1:2] - 1
        keypoints = np.stack([xs, ys], axis=-1).astype(np.float32)
        boxes = boxes.copy()
        boxes[:, 4] = _by_last_dim(outputs, 2)[:, 1]
        boxes = _regress(boxes, _by_last_dim(outputs, 4))
        keep = boxes[:, 4] > s.threshold_onet
        boxes, keypoints = boxes[keep], keypoints[keep]
        order = np.argsort(-boxes[:, 4], kind="stable")
        boxes, keypoints = boxes[order], keypoints[order]
        kept = _nms_indices(boxes, s.nms_onet, method="min")
        return boxes[kept], keypoints[kept]


def _pnet_boxes(regression: np.ndarray, probability: np.ndarray, threshold: float) -> np.ndarray:
    """Rows (x0, y0, x1, y1, score) in the scaled image, sorted by score (PNet: stride 2, cell 12)."""
    ys, xs = np.nonzero(probability > threshold)
    reg = regression[ys, xs]
    x0, y0 = xs * 2 + 1.0, ys * 2 + 1.0
    x1, y1 = xs * 2 + 12.0, ys * 2 + 12.0
    boxes = np.stack(
        [
            x0 + reg[:, 0] * 11,
            y0 + reg[:, 1] * 11,
            x1 + reg[:, 2] * 11,
            y1 + reg[:, 3] * 11,
            probability[ys, xs],
        ],
        axis=1,
    ).astype(np.float64)
    return _by_score(boxes)


def _by_score(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.argsort(-boxes[:, 4], kind="stable")]


def _nms(boxes: np.ndarray, threshold: float) -> np.ndarray:
    return boxes[_nms_indices(boxes, threshold)]


def _nms_indices(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Keep box j unless an earlier (higher-scored) box overlaps it by more than `threshold`.

    Like the reference, earlier boxes suppress even when they were suppressed themselves. The
    overlap matrix is built in column blocks so memory stays bounded on busy frames.
    """
    n = len(boxes)
    if n == 0:
        return np.empty(0, int)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = np.ones(n, bool)
    block = 512
    for start in range(1, n, block):
        cols = np.arange(start, min(n, start + block))
        rows = slice(0, cols[-1])
        iw = np.maximum(
            0,
            np.minimum(boxes[rows, None, 2], boxes[None, cols, 2])
            - np.maximum(boxes[rows, None, 0], boxes[None, cols, 0]),
        )
        ih = np.maximum(
            0,
            np.minimum(boxes[rows, None, 3], boxes[None, cols, 3])
            - np.maximum(boxes[rows, None, 1], boxes[None, cols, 1]),
        )
        inter = iw * ih
        if method == "min":
            denominator = np.minimum(area[rows, None], area[None, cols])
        else:
            denominator = area[rows, None] + area[None, cols] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter / denominator
        earlier = np.arange(cols[-1])[:, None] < cols[None, :]
        keep[cols] = ~np.any((overlap > threshold) & earlier, axis=0)
    return np.nonzero(keep)[0]


def _square(boxes: np.ndarray) -> np.ndarray:
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] += offsets * np.stack([w, h, w, h], axis=1)
    return boxes


def _crop_patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Bilinear crops resized to size x size, zero (mid-grey) outside the image.

    Same sampling as tf.image.crop_and_resize with boxes normalized by the image size, which the
    reference uses: pixel coordinate = normalized * (dim - 1).
    """
    height, width = image.shape[:2]
    fy, fx = (height - 1) / height, (width - 1) / width
    patches = np.empty((len(boxes), size, size, 3), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes[:, :4]):
        sx = (x1 - x0) * fx / (size - 1)
        sy = (y1 - y0) * fy / (size - 1)
        matrix = np.array([[sx, 0, x0 * fx], [0, sy, y0 * fy]], np.float64)
        patches[i] = cv2.warpAffine(
            image,
            matrix,
            (size, size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
    return patches
