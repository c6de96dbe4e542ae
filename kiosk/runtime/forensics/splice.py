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

Each 32-px tile (on the grid from the origin, in phase with JPEG blocks) gets these features as
they are and as differences from the image's median tile, plus the image's median ghost curve
(the final save's quality); gradient-boosted trees (trained in training/tamper/splice.py,
shipped as plain arrays, evaluated here in numpy) give each tile P(spliced). The heat map is
that tile map; the image score is its highest tile (see `pool`).
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from kiosk.config import Config
from kiosk.contract.errors import InputError, ModelError
from kiosk.contract.fileio import write_atomically
from kiosk.runtime.forensics.ela_features import heat_map_png
from kiosk.runtime.models.registry import ModelRegistry

if TYPE_CHECKING:  # suite.py imports this module for its FACTORIES
    from kiosk.runtime.forensics.suite import Artifacts, Capture

log = logging.getLogger(__name__)

MODEL_NAME = "splice_jpeg"
TILE = 32
GHOST_QUALITIES = (50, 60, 70, 75, 80, 85, 90, 95)
# Larger captures are analysed on a centred window of at most this side (offsets multiples of
# 8, so the JPEG grid keeps its phase): 8 JPEG round trips of a 12 MP frame would cost seconds
# on a Pi, and the face, where a forger works, sits in the middle of an ID capture.
MAX_SIDE = 2048
BAND_TILES = 8  # tile rows computed at once (memory), with one tile of context each side
MIN_TILES = 4  # per axis: the median tile must describe a "rest of the image"


def _tile_mean(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return plane[: rows * TILE, : cols * TILE].reshape(rows, TILE, cols, TILE).mean(axis=(1, 3))


def _phase_means(diff: np.ndarray, rows: int, cols: int, axis: int) -> np.ndarray:
    """(rows, cols, 8): per tile, the mean neighbour difference at each grid phase mod 8."""
    if axis == 1:  # column differences x -> x + 1, phase = x mod 8
        padded = np.pad(diff, ((0, 0), (0, 1)), mode="edge")
        tiles = padded[: rows * TILE, : cols * TILE].reshape(rows, TILE, cols, TILE // 8, 8)
        return tiles.mean(axis=(1, 3))
    padded = np.pad(diff, ((0, 1), (0, 0)), mode="edge")
    tiles = padded[: rows * TILE, : cols * TILE].reshape(rows, TILE // 8, 8, cols, TILE)
    return tiles.mean(axis=(1, 4)).transpose(0, 2, 1)


def tile_features(gray: np.ndarray) -> np.ndarray:
    """(rows, cols, F) float32 features of a uint8 luma plane's 32-px tile grid (see module)."""
    rows, cols = gray.shape[0] // TILE, gray.shape[1] // TILE
    if rows < MIN_TILES or cols < MIN_TILES:
        raise InputError(
            f"image {gray.shape[1]}x{gray.shape[0]} is too small for the splice check (at least "
            f"{MIN_TILES * TILE}x{MIN_TILES * TILE} px); use the full-resolution capture"
        )
    gray = gray[: rows * TILE, : cols * TILE]
    # Tile rows a band at a time, each with one tile of context above and below (what the 3x3
    # filters and the row differences reach): the same features as the whole plane at once, in a
    # band's memory instead of a dozen full-window float copies (~110 MB on a 2048 px window).
    bands = []
    for first in range(0, rows, BAND_TILES):
        last = min(rows, first + BAND_TILES)
        top, bottom = max(0, first - 1), min(rows, last + 1)
        band = _local_features(np.ascontiguousarray(gray[top * TILE : bottom * TILE]))
        bands.append(band[first - top : first - top + last - first])
    local = np.concatenate(bands, 0)
    median = np.median(local.reshape(-1, local.shape[-1]), axis=0)
    context = np.broadcast_to(
        median[: 2 * len(GHOST_QUALITIES)], (rows, cols, 2 * len(GHOST_QUALITIES))
    )
    return np.concatenate([local, local - median, context], -1).astype(np.float32)


def _local_features(gray: np.ndarray) -> np.ndarray:
    """(rows, cols, F_local) of a plane whose sides are whole tiles: ghosts, blocking, texture."""
    rows, cols = gray.shape[0] // TILE, gray.shape[1] // TILE
    plane = gray.astype(np.float32)
    ghosts = []
    for quality in GHOST_QUALITIES:
        ok, encoded = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise InputError("could not JPEG-encode the capture's luma for the splice check")
        decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE).astype(np.float32)
        ghosts.append(_tile_mean((plane - decoded) ** 2, rows, cols))
    ghost = np.log1p(np.stack(ghosts, -1))  # (rows, cols, Q)
    shape = ghost - ghost.mean(-1, keepdims=True)  # the curve's shape, level removed
    blocks = []
    for axis in (1, 0):
        diff = np.abs(np.diff(plane, axis=axis))
        phases = _phase_means(diff, rows, cols, axis) + 1e-3
        others = phases[..., :7]
        blocks.append(np.log(phases[..., 7] / others.mean(-1)))  # host-grid blocking
        blocks.append(np.log(others.max(-1) / others.mean(-1)))  # blocking on another phase
    block = np.stack(blocks, -1)
    residual = np.abs(plane - cv2.medianBlur(gray, 3).astype(np.float32))
    texture = np.stack(
        [
            np.log1p(_tile_mean(residual, rows, cols)),
            np.log1p(_tile_mean(np.abs(cv2.Laplacian(plane, cv2.CV_32F)), rows, cols)),
            np.log1p(
                _tile_mean(
                    (plane - _tile_mean(plane, rows, cols).repeat(TILE, 0).repeat(TILE, 1)) ** 2,
                    rows,
                    cols,
                )
            ),
        ],
        -1,
    )
    return np.concatenate([ghost, shape, block, texture], -1)


class Trees:
    """Gradient-boosted regression trees as arrays (sklearn's layout): P = sigmoid(bias +
    rate * sum of leaf values). Evaluated level by level for all samples at once."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.feature = arrays["feature"]  # (trees, nodes) int32, -1 at leaves
        self.threshold = arrays["threshold"]  # (trees, nodes) float32
        self.left = arrays["left"]  # (trees, nodes) int32, -1 at leaves
        self.right = arrays["right"]
        self.value = arrays["value"]  # (trees, nodes) float32
        self.bias = float(arrays["bias"])
        self.rate = float(arrays["rate"])
        self.depth = int(arrays["depth"])
        self.n_features = int(arrays["n_features"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != self.n_features:
            raise ModelError(
                f"splice model expects {self.n_features} features, the kiosk computes "
                f"{x.shape[1]}: the model and the kiosk's code are from different versions"
            )
        total = np.zeros(len(x), np.float64)
        rows = np.arange(len(x))
        for t in range(len(self.feature)):
            node = np.zeros(len(x), np.int64)
            for _ in range(self.depth):
                feature = self.feature[t, node]
                inner = feature >= 0
                go_left = x[rows, np.maximum(feature, 0)] <= self.threshold[t, node]
                step = np.where(go_left, self.left[t, node], self.right[t, node])
                node = np.where(inner, step, node)
            total += self.value[t, node]
        return 1.0 / (1.0 + np.exp(-(self.bias + self.rate * total)))

    @classmethod
    def from_bytes(cls, content: bytes) -> Trees:
        try:
            with np.load(io.BytesIO(content), allow_pickle=False) as data:
                return cls({key: data[key] for key in data.files})
        except (ValueError, KeyError, OSError) as exc:
            raise ModelError(f"splice model file is not a valid tree bundle: {exc}") from None


def listed_trees(registry: ModelRegistry, name: str, remedy: str) -> tuple[Trees, float] | None:
    """The tree model `name` and its threshold from the verified bundle, or None when the
    manifest does not list it; a listed model without a threshold is refused (`remedy` says how
    to make one)."""
    if name not in registry.entries:
        return None
    threshold = registry.entry(name).threshold
    if threshold is None:
        raise ModelError(f"manifest entry {name!r} has no threshold; {remedy}")
    return Trees.from_bytes(registry.verified_bytes(name)), threshold


def window(height: int, width: int, limit: int = MAX_SIDE) -> tuple[slice, slice]:
    """A centred window of at most `limit` px a side, its corner on the 8-px JPEG grid."""

    def axis(size: int) -> slice:
        if size <= limit:
            return slice(0, size)
        start = ((size - limit) // 2) // 8 * 8
        return slice(start, start + limit)

    return axis(height), axis(width)


def pool(tile_scores: np.ndarray) -> float:
    """The highest tile score. Chosen on validation images only (AUC 0.831, against 0.825 for
    the mean of the top 4 tiles and 0.772 for the max of 3x3-tile means): pasted regions are
    often only a few tiles, and averaging dilutes them more than it calms honest tiles."""
    return float(tile_scores.max())


class SpliceCheck:
    """Forensic check "splice": regions with another compression history than the capture."""

    key = "splice"
    needs_face = False

    def __init__(self, trees: Trees, threshold: float) -> None:
        self.trees = trees
        self.threshold = threshold

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
        tiles = self.tile_scores(gray)
        score = pool(tiles)
        record: dict[str, Any] = {
            "score": round(score, 6),
            "threshold": self.threshold,
            "flagged": score >= self.threshold,
            "tiles": int(tiles.size),
            "flagged_tiles": int((tiles >= self.threshold).sum()),
            "window": [cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start],
        }
        path = artifacts.path("splice_heat.png")
        if path is not None:
            heat = cv2.resize(
                tiles.astype(np.float32),
                (gray.shape[1], gray.shape[0]),
                interpolation=cv2.INTER_NEAREST,
            )
            write_atomically(path, heat_map_png(heat))
            record["heat_map"] = str(path)
        return record


def make_splice_check(registry: ModelRegistry, config: Config) -> SpliceCheck | None:
    """The check for the manifest's `splice_jpeg` model, or None when it is not listed."""
    del config  # nothing configurable: the features are the model's
    listed = listed_trees(registry, MODEL_NAME, "re-run the export")
    return None if listed is None else SpliceCheck(*listed)
