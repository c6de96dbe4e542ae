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

import io
import logging
from functools import cache
from typing import Any

import cv2
import numpy as np

from kiosk.config import Config
from kiosk.contract.errors import InputError, ModelError
from kiosk.contract.fileio import write_atomically
from kiosk.runtime.forensics import jpeg_grid
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.ela_features import heat_map_png
from kiosk.runtime.models.fusion import Fusion, sigmoid
from kiosk.runtime.models.litert import make_interpreter
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.tflite_io import Model

log = logging.getLogger(__name__)

MODEL_NAME = "splice_jpeg"
CNN_MODEL_NAME = "splice_cnn"
TILE = 32
GHOST_QUALITIES = (50, 60, 70, 75, 80, 85, 90, 95)
# Larger captures are analysed on a centred window of at most this side (offsets multiples of
# 8, so the JPEG grid keeps its phase): 8 JPEG round trips of a 12 MP frame would cost seconds
# on a Pi, and the face, where a forger works, sits in the middle of an ID capture.
MAX_SIDE = 2048
# The tile CNN sees a centred window of at most this side within that (offsets on the 8-px grid):
# ~0.2 ms a tile on one x86 thread, so a 2048-px window's 4,096 tiles would add ~0.9 s to a 12 MP
# capture's pass (several seconds on a Pi); 1,024 tiles cover the face of an ID capture. Every
# image the fusion was fitted and tested on (<= 512 px) is seen whole.
CNN_MAX_SIDE = 1024
BAND_TILES = 8  # tile rows computed at once (memory), with one tile of context each side
MIN_TILES = 4  # per axis: the median tile must describe a "rest of the image"
# Low AC frequencies (zigzag order) whose combs are measured: they survive a final save best.
COMB_FREQUENCIES = ((0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1), (3, 0))
COMB_STEPS = np.arange(2, 41, dtype=np.float32)  # quantisation steps of qualities ~98..30
COMB_SAMPLE = 3000  # coefficients per frequency for the image-wide comb search
DC_STEPS = np.arange(3, 17, dtype=np.float64)  # DC steps of qualities ~92..50 (off-grid comb)
BLOCKS = TILE // 8
CNN_CONTEXT = 16  # px of context around a tile for the tile CNN (64-px patches)


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
    return assemble(np.concatenate([np.concatenate(bands, 0), comb_features(gray)], -1))


def assemble(local: np.ndarray) -> np.ndarray:
    """A tile's features from the local ones: as they are, minus the image's median tile, and
    the median ghost curve (the final save's quality) as context."""
    rows, cols = local.shape[:2]
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


def tile_patches(gray: np.ndarray) -> np.ndarray:
    """(rows x cols, 64, 64) uint8: each 32-px tile of the plane's grid with CNN_CONTEXT px around
    it (reflected at the border), row by row: what the tile CNN scores."""
    rows, cols = gray.shape[0] // TILE, gray.shape[1] // TILE
    padded = np.pad(gray[: rows * TILE, : cols * TILE], CNN_CONTEXT, mode="reflect")
    side = TILE + 2 * CNN_CONTEXT
    windows = np.lib.stride_tricks.sliding_window_view(padded, (side, side))[::TILE, ::TILE]
    return np.ascontiguousarray(windows.reshape(-1, side, side))


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    matrix = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16) * np.sqrt(2 / 8)
    matrix[0] /= np.sqrt(2)
    return matrix.astype(np.float32)


DCT = _dct_matrix()


def _per_tile(blocks: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Sum over each tile's BLOCKS x BLOCKS blocks of a (block rows, block cols, ...) array."""
    blocks = blocks[: rows * BLOCKS, : cols * BLOCKS]
    return blocks.reshape(rows, BLOCKS, cols, BLOCKS, *blocks.shape[2:]).sum(axis=(1, 3))


def comb_features(gray: np.ndarray) -> np.ndarray:
    """(rows, cols, 6): quantisation-comb fit on the grid (mean and worst over frequencies, for
    the image's strongest and second comb), the off-grid DC comb's z and the Haar noise level.
    Whole-window statistics choose the combs (the DCT and block sums below are computed in bands
    of tile rows only to bound memory)."""
    rows, cols = gray.shape[0] // TILE, gray.shape[1] // TILE
    plane = gray[: rows * TILE, : cols * TILE].astype(np.float32)
    fits = []
    for coefficient in _dct_coefficients(plane):
        values = coefficient[np.abs(coefficient) > 1.0]
        if len(values) < 32:  # a flat picture: no comb to measure
            fits.append(np.zeros((rows, cols, 2), np.float32))
            continue
        values = values[:: max(1, len(values) // COMB_SAMPLE)]
        angles = (2 * np.pi / COMB_STEPS)[None] * values[:, None]
        strength = np.hypot(np.cos(angles).mean(0), np.sin(angles).mean(0))
        per_comb = []
        for step in COMB_STEPS[np.argsort(-strength)[:2]]:
            outside = (np.abs(coefficient) > step / 2).astype(
                np.float32
            )  # the zero bin says nothing
            fit = np.cos((2 * np.pi / step) * coefficient) * outside
            per_comb.append(
                _per_tile(fit, rows, cols) / np.maximum(_per_tile(outside, rows, cols), 1)
            )
        fits.append(np.stack(per_comb, -1))
    comb = np.stack(fits, 0)
    return np.concatenate(
        [comb.mean(0), comb.min(0), _shifted_dc_comb(plane, rows, cols), _noise(plane, rows, cols)],
        -1,
    )


def _dct_coefficients(plane: np.ndarray) -> np.ndarray:
    """(COMB_FREQUENCIES, block rows, block cols): the 8x8 DCT of every block at the comb
    frequencies only, a band of tile rows at a time (the whole 64-coefficient array and its
    temporaries were ~60 MB on a 2048 px window)."""
    block_rows, block_cols = plane.shape[0] // 8, plane.shape[1] // 8
    out = np.empty((len(COMB_FREQUENCIES), block_rows, block_cols), np.float32)
    u, v = np.array(COMB_FREQUENCIES).T
    step = BAND_TILES * BLOCKS
    for top in range(0, block_rows, step):
        part = plane[top * 8 : (top + step) * 8]
        blocks = part.reshape(-1, 8, block_cols, 8).transpose(0, 2, 1, 3) - 128.0
        coefficients = DCT @ blocks @ DCT.T  # (band block rows, block cols, 8, 8)
        out[:, top : top + step] = coefficients[..., u, v].transpose(2, 0, 1)
    return out


def _shifted_dc_comb(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows, cols, 1) log1p of each tile's DC-comb Rayleigh z on the shifted grid and step where
    the image's tiles show the strongest comb (their 90th percentile): a paste's own JPEG grid."""
    sums, textured = _block_sums(plane)
    cosines, sines = _dc_phases()
    height, width = rows * BLOCKS - 1, cols * BLOCKS - 1  # whole blocks at every offset
    best, best_z = -1.0, np.zeros((rows, cols), np.float32)
    for dy in range(8):
        for dx in range(8):
            if dy == dx == 0:
                continue
            total = sums[dy::8, dx::8][:height, :width]
            usable = textured[dy::8, dx::8][:height, :width].astype(np.float32)
            total = np.pad(total, ((0, 1), (0, 1)))
            usable = np.pad(usable, ((0, 1), (0, 1)))[..., None]
            real = _per_tile(cosines[:, total].transpose(1, 2, 0) * usable, rows, cols)
            imaginary = _per_tile(sines[:, total].transpose(1, 2, 0) * usable, rows, cols)
            z = (real**2 + imaginary**2) / np.maximum(_per_tile(usable, rows, cols), 1)
            level = np.quantile(z, 0.9, axis=(0, 1))
            step = int(np.argmax(level))
            if level[step] > best:
                best, best_z = float(level[step]), z[..., step]
    return np.log1p(best_z)[..., None]


@cache
def _dc_phases() -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of 2 pi x (block sum / 8) / step for every possible block sum and DC step:
    (DC_STEPS, 255 x 64 + 1) tables, the same for every capture, so made once."""
    angles = 2 * np.pi * np.arange(255 * 64 + 1)[None] / (8 * DC_STEPS[:, None])
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _block_sums(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 block starting at every pixel: its sum (8 x DC, an integer: the phases come from a
    table) and whether it is textured (flat blocks comb at every step). In float64 as trained (the
    variance test is exact near its limit), a band of rows at a time: four full-window float64
    copies were ~130 MB on a 2048 px window."""
    height = plane.shape[0]
    sums = np.empty(plane.shape, np.int32)
    textured = np.empty(plane.shape, bool)
    band = BAND_TILES * TILE
    for top in range(0, height, band):
        stop = min(top + band, height)
        part = plane[top : min(stop + 7, height)].astype(np.float64)  # the blocks' 7 rows below
        box, squares = (
            cv2.boxFilter(
                values, -1, (8, 8), normalize=False, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT
            )[: stop - top]
            for values in (part, part**2)
        )
        textured[top:stop] = squares / 64 - (box / 64) ** 2 >= jpeg_grid.FLAT_STD**2
        sums[top:stop] = np.rint(box)
    return sums, textured


def _noise(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows, cols, 1) log1p of each tile's noise sigma: MAD of the Haar HH band / 0.6745."""
    diagonal = (plane[0::2, 0::2] - plane[0::2, 1::2] - plane[1::2, 0::2] + plane[1::2, 1::2]) / 2
    half = TILE // 2
    per_tile = np.abs(diagonal).reshape(rows, half, cols, half).transpose(0, 2, 1, 3)
    return np.log1p(np.median(per_tile.reshape(rows, cols, -1), -1) / 0.6745)[..., None]


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
        self.arrays = arrays  # a bundle may hold more than one stage (see ImageStage)

    def logits(self, x: np.ndarray, chunk: int = 256) -> np.ndarray:
        """(N,) bias + rate x the leaves' sum for (N, F) features: every tree at once, one level
        at a time, `chunk` samples at a time: a face's 300 trees in ~0.1 ms instead of ~13 ms
        tree by tree, a 640x480 capture's 300 tiles in half the time; on a 2048-px window's
        4,096 tiles it is no faster, and the chunks bound its (trees, samples) arrays."""
        if x.shape[1] != self.n_features:
            raise ModelError(
                f"tree model expects {self.n_features} features, the kiosk computes "
                f"{x.shape[1]}: the model and the kiosk's code are from different versions"
            )
        trees = np.arange(len(self.feature))[:, None]  # (T, 1)
        out = np.empty(len(x), np.float64)
        for start in range(0, len(x), chunk):
            part = x[start : start + chunk]
            samples = np.arange(len(part))[None, :]  # (1, n)
            node = np.zeros((len(self.feature), len(part)), np.int64)
            for _ in range(self.depth):
                feature = self.feature[trees, node]
                go_left = part[samples, np.maximum(feature, 0)] <= self.threshold[trees, node]
                step = np.where(go_left, self.left[trees, node], self.right[trees, node])
                node = np.where(feature >= 0, step, node)
            out[start : start + len(part)] = self.value[trees, node].sum(0, dtype=np.float64)
        return self.bias + self.rate * out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(x)))

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
                heat_tiles = 1.0 / (1.0 + np.exp(-np.clip(cnn_logits, -50.0, 50.0)))
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
