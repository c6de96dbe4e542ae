"""Splice check: does one region of the capture carry another compression history than the rest?

A region pasted from another picture usually arrives with its own past: it was JPEG-compressed
at another quality, or not at all, or on an 8x8 grid that no longer lines up with the host's,
or it was resampled. Those traces survive a final save (and certainly a lossless one). Classical
features see them without a CNN (docs/tamper_sr.md):

- **JPEG ghosts** (Farid 2009): recompress the luma at qualities 50..95 and measure the squared
  difference per tile; a region once saved at quality q shows a dip at q that the rest lacks.
- **Blocking per grid phase**: mean absolute neighbour differences at each column/row phase
  mod 8; JPEG blocks raise phase 7 on the host's grid, a shifted paste raises another phase.
- **Noise residual and texture**: a resampled or differently processed region has another
  noise level than its surroundings.

- **Quantisation combs** (double JPEG, Bianchi & Piva 2012 in phase form): on the final 8x8
  grid, the image's two strongest combs of each low DCT frequency and per tile how well its
  coefficients sit on them (a JPEG host carries its first save's comb, a paste does not); off
  the grid, the DC comb of the shifted grid and step where the image's tiles show one most (a
  paste keeps its own JPEG grid); and a Haar noise level.

Each 32-px tile (on the grid from the origin, in phase with JPEG blocks) gets these features as
they are and as differences from the image's median tile, plus the image's median ghost curve
(the final save's quality); gradient-boosted trees (trained in training/tamper/splice.py,
shipped as plain arrays, evaluated here in numpy) give each tile P(spliced). The heat map is
that tile map. The image score is a second stage over the map (`ImageStage`): a logistic model
of pooled region features (top-k means, smoothed maxima, the largest connected region above a
level, the share of outlying tiles), fitted on maps of training pictures that their tile model
never saw. One noisy tile no longer decides: a paste must cover a region to count.

With the `splice_cnn` model listed, a learned noise-residual branch joins them: a small CNN
(`TileCnn`) scores each tile from a 64-px patch around it, and the image score is a logistic
regression (the entry's `fusion`) of the trees' image logit and the CNN map's pooled logits
(`cnn_features`); the CNN's map, which localises better, draws the heat map (docs/tamper_sr.md).
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from kiosk.config import Config
from kiosk.contract.errors import ModelError
from kiosk.contract.fileio import write_atomically
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.ela_features import heat_map_png
from kiosk.runtime.forensics.splice_features import CNN_CONTEXT, TILE, tile_features, tile_patches
from kiosk.runtime.models.fusion import Fusion, sigmoid, sigmoids
from kiosk.runtime.models.litert import make_interpreter
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.tflite_io import Model
from kiosk.runtime.models.trees import Trees, listed_trees

log = logging.getLogger(__name__)

MODEL_NAME = "splice_jpeg"
CNN_MODEL_NAME = "splice_cnn"
# Larger captures are analysed on a centred window of at most this side (offsets multiples of
# 8, so the JPEG grid keeps its phase): 8 JPEG round trips of a 12 MP frame would cost seconds
# on a Pi, and the face, where a forger works, sits in the middle of an ID capture.
MAX_SIDE = 2048
# The tile CNN sees a centred window of at most this side within that (offsets on the 8-px grid):
# ~0.2 ms a tile on one x86 thread, so a 2048-px window's 4,096 tiles would add ~0.9 s to a 12 MP
# capture's pass (several seconds on a Pi); 1,024 tiles cover the face of an ID capture. Every
# image the fusion was fitted and tested on (<= 512 px) is seen whole.
CNN_MAX_SIDE = 1024


def window(height: int, width: int, limit: int = MAX_SIDE) -> tuple[slice, slice]:
    """A centred window of at most `limit` px a side, its corner on the 8-px JPEG grid."""

    def axis(size: int) -> slice:
        if size <= limit:
            return slice(0, size)
        start = ((size - limit) // 2) // 8 * 8
        return slice(start, start + limit)

    return axis(height), axis(width)


def pool(tile_scores: np.ndarray) -> float:
    """The highest tile score: the first-stage pooling, kept as `max_tile` in the record and as
    the scale of the tile threshold that draws the flagged tiles."""
    return float(tile_scores.max())


def _largest_region(mask: np.ndarray) -> np.ndarray | None:
    """The largest 8-connected region of a boolean tile mask, or None when it is empty."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    if count <= 1:
        return None
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _box_max(scores: np.ndarray, side: int) -> float:
    """Highest mean of `side` x `side` tiles lying wholly inside the map."""
    if min(scores.shape) < side:
        return float(scores.mean())
    means = cv2.blur(scores, (side, side), borderType=cv2.BORDER_REFLECT)
    first = side // 2
    return float(
        means[
            first : scores.shape[0] - (side - 1) // 2, first : scores.shape[1] - (side - 1) // 2
        ].max()
    )


def region_features(tile_scores: np.ndarray) -> np.ndarray:
    """(21,) pooled features of a tile map that need a region, not one tile: top-k means, box
    and Gaussian smoothed maxima, the share of tiles above the median + k MAD (of the logits),
    and per level the largest connected region's size and contrast to the median."""
    scores = tile_scores.astype(np.float32)
    clipped = np.clip(scores, 1e-4, 1 - 1e-4)
    logits = np.log(clipped / (1 - clipped))
    ranked = np.sort(scores.ravel())[::-1]
    median = float(np.median(logits))
    spread = float(np.median(np.abs(logits - median))) + 1e-3
    out = [
        ranked[0], ranked[:4].mean(), ranked[:8].mean(), scores.mean(), float(np.median(scores)),
        median, spread, _box_max(scores, 2), _box_max(scores, 3),
        float(cv2.GaussianBlur(scores, (0, 0), 1.0).max()),
        float((logits > median + 3 * spread).mean()), float((logits > median + 6 * spread).mean()),
    ]  # fmt: skip
    for level in (0.5, 0.8, 0.95):
        region = _largest_region(scores >= level)
        out += [0.0, 0.0] if region is None else [region.mean(), logits[region].mean() - median]
    region = _largest_region(logits > median + 3 * spread)
    out += (
        [0.0, 0.0, 0.0]
        if region is None
        else [region.mean(), logits[region].mean() - median, scores[region].max()]
    )
    return np.array(out, np.float32)


class ImageStage:
    """The image score from the tile map: logistic regression on `region_features` (weights
    with the training standardisation folded in), stored beside the tile trees as `image_*`."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        try:
            self.weights = arrays["image_weights"].astype(np.float64)
            self.bias = float(arrays["image_bias"])
            self.tile_threshold = float(arrays["tile_threshold"])
        except KeyError:
            raise ModelError(
                "splice model has no image stage (a bundle from before the two-stage check); "
                "re-run python -m training.tamper.splice"
            ) from None

    def logit(self, tile_scores: np.ndarray) -> float:
        return self.bias + float(region_features(tile_scores) @ self.weights)

    def score(self, tile_scores: np.ndarray) -> float:
        return sigmoid(self.logit(tile_scores))


TREES_LOGIT = "trees_logit"
CNN_FEATURES = ("cnn_top4", "cnn_box2", "cnn_median")
CNN_REMEDY = "re-run python -m training.tamper.splice_fusion"


class TileCnn:
    """The splice tile CNN (TFLite on LiteRT, float16): each 32-px tile's logit from its 64-px
    patch (`tile_patches`), a fixed batch at a time (the last one padded)."""

    def __init__(self, content: bytes, num_threads: int = 1) -> None:
        self.model = Model(make_interpreter(content, num_threads=num_threads))
        side = TILE + 2 * CNN_CONTEXT
        batch, *rest = self.model.input_shape
        if rest != [side, side, 1]:
            raise ModelError(
                f"splice CNN takes input {list(self.model.input_shape)}, the kiosk cuts "
                f"[batch, {side}, {side}, 1] patches; {CNN_REMEDY}"
            )
        self.batch = batch

    def logits(self, gray: np.ndarray) -> np.ndarray:
        """(rows, cols) logits of a uint8 luma plane's tiles."""
        rows, cols = gray.shape[0] // TILE, gray.shape[1] // TILE
        patches = tile_patches(gray)
        out = np.empty(len(patches), np.float32)
        for start in range(0, len(patches), self.batch):
            chunk = patches[start : start + self.batch].astype(np.float32)
            count = len(chunk)
            if count < self.batch:
                padding = np.zeros((self.batch - count, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, padding])
            out[start : start + count] = self.model(chunk[..., None]).reshape(-1)[:count]
        return out.reshape(rows, cols)


def cnn_features(tile_logits: np.ndarray) -> dict[str, float]:
    """The tile CNN's map pooled for the fusion: the mean of its four highest logits, the
    highest mean of 2x2 neighbouring tiles, and the median (the image's own level)."""
    ranked = np.sort(tile_logits.ravel())[::-1]
    return {
        "cnn_top4": float(ranked[:4].mean()),
        "cnn_box2": _box_max(tile_logits.astype(np.float32), 2),
        "cnn_median": float(np.median(tile_logits)),
    }


class SpliceCheck:
    """Forensic check "splice": regions with another compression history than the capture."""

    key = "splice"
    needs_face = False

    def __init__(
        self,
        trees: Trees,
        threshold: float,
        cnn: TileCnn | None = None,
        fusion: Fusion | None = None,
    ) -> None:
        if (cnn is None) != (fusion is None):
            raise ValueError("the splice CNN needs its fusion weights and the other way round")
        self.trees = trees
        self.threshold = threshold
        self.cnn = cnn
        self.fusion = fusion

    def tile_scores(self, gray: np.ndarray) -> np.ndarray:
        """(rows, cols) P(spliced) per 32-px tile of a uint8 luma plane."""
        features = tile_features(gray)
        rows, cols, count = features.shape
        return self.trees.predict(features.reshape(-1, count)).reshape(rows, cols)

    def run(self, capture: Capture, artifacts: Artifacts) -> dict[str, Any]:
        if capture.luma is not None:  # the full-resolution plane: resampling hides the grid
            luma = capture.luma()
            rows, cols = window(*luma.shape)
            gray = np.asarray(luma[rows, cols])
        else:
            gray = cv2.cvtColor(capture.rgb, cv2.COLOR_RGB2GRAY)
            rows, cols = window(*gray.shape)
            gray = gray[rows, cols]
        # Read per run: a bundle from before the image stage fails this check's record, not the
        # forensic pass (as a bundle with other features does in `Trees.predict`).
        stage = ImageStage(self.trees.arrays)
        tiles = self.tile_scores(gray)
        trees_logit = stage.logit(tiles)
        score, extra, heat_tiles = sigmoid(trees_logit), {}, tiles
        if self.cnn is not None and self.fusion is not None:
            inner_rows, inner_cols = window(*gray.shape, limit=CNN_MAX_SIDE)
            cnn_logits = self.cnn.logits(gray[inner_rows, inner_cols])
            if cnn_logits.shape == tiles.shape:  # it saw the whole window: it draws the heat
                # map, as it localises better (tile AUC on validation 0.933 vs the trees' 0.900:
                # reports/tamper_ela/splice/cnn_trial.md)
                heat_tiles = sigmoids(cnn_logits)
            score = self.fusion.score({TREES_LOGIT: trees_logit, **cnn_features(cnn_logits)})
            extra = {
                "trees_score": round(sigmoid(trees_logit), 6),
                "cnn_max_tile": round(sigmoid(float(cnn_logits.max())), 6),
                "cnn_tiles": int(cnn_logits.size),
            }
        record: dict[str, Any] = {
            "score": round(score, 6),
            "threshold": self.threshold,
            "flagged": score >= self.threshold,
            "tiles": int(tiles.size),
            "flagged_tiles": int((tiles >= stage.tile_threshold).sum()),
            "max_tile": round(pool(tiles), 6),
            "tile_threshold": stage.tile_threshold,
            "window": [cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start],
            "model": "trees" if self.cnn is None else "trees+cnn",
            **extra,
        }
        path = artifacts.path("splice_heat.png")
        if path is not None:
            heat = cv2.resize(
                heat_tiles.astype(np.float32),
                (gray.shape[1], gray.shape[0]),
                interpolation=cv2.INTER_NEAREST,
            )
            write_atomically(path, heat_map_png(heat))
            record["heat_map"] = str(path)
            record["heat_map_model"] = "trees" if heat_tiles is tiles else "cnn"
        return record


def make_splice_check(registry: ModelRegistry, config: Config) -> SpliceCheck | None:
    """The check for the manifest's `splice_jpeg` trees, fused with the `splice_cnn` tile CNN
    when that is listed too (its entry holds the fusion's weights and the threshold); None
    without the trees."""
    listed = listed_trees(registry, MODEL_NAME, "re-run the export")
    if listed is None:
        return None
    if CNN_MODEL_NAME not in registry.entries:
        return SpliceCheck(*listed)
    entry = registry.entry(CNN_MODEL_NAME)
    fusion = Fusion.from_entry(
        entry.extra, CNN_MODEL_NAME, {TREES_LOGIT, *CNN_FEATURES}, CNN_REMEDY
    )
    if fusion is None or entry.threshold is None:
        raise ModelError(
            f"manifest entry {CNN_MODEL_NAME!r} needs `fusion` weights and a threshold; "
            f"{CNN_REMEDY}"
        )
    cnn = TileCnn(registry.verified_bytes(CNN_MODEL_NAME), config.models.num_threads)
    return SpliceCheck(listed[0], entry.threshold, cnn, fusion)
