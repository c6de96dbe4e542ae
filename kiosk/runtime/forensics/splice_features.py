"""Per-tile features of the splice check (kiosk/runtime/forensics/splice.py): what a pasted
region's own compression history leaves in a luma plane's 32-px tile grid.

JPEG ghosts, blocking per grid phase, noise residual and texture per tile (`tile_features`,
in bands of tile rows to bound memory), quantisation combs on and off the 8x8 grid
(`comb_features`), and the 64-px patches the tile CNN scores (`tile_patches`). Pure numpy and
OpenCV on the plane: training (training/tamper/splice.py) computes the same arrays.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from kiosk.contract.errors import InputError
from kiosk.runtime.forensics import jpeg_grid

TILE = 32
GHOST_QUALITIES = (50, 60, 70, 75, 80, 85, 90, 95)
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
