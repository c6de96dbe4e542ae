"""DC quantisation comb: a classical, model-free test for a JPEG past of the whole frame.

JPEG stores each 8x8 block's DC coefficient (8 x the block mean) as a multiple of the table's
DC step q (3 at quality 90, 5 at 85, 8 at 75, 16 at 50). Decoded back to 8-bit pixels, every
block's DC still lies within about 0.3 of a multiple of q. A frame that never was a JPEG has
no such comb: over many textured blocks, DC mod q is uniform. The test, for each candidate q
and each of the 64 grid offsets (a JPEG cropped by a non-multiple of 8 keeps its comb on a
shifted grid), is the circular-mean statistic z = n |mean exp(2 pi i DC / q)|^2, which for a
never-JPEG frame is close to Exponential(1) (Rayleigh test). The frame's score is the largest
z over all (q, offset); its p-value is bounded by M exp(-z) for the M tests made, so a false
alarm rate can be set without data; `kiosk calibrate` measures the camera's own z values too.

Blocks that are flat (std < FLAT_STD: DC = 8 x an integer, a comb at q | 8 for any picture) or
touch 0 or 255 (clipping moves the DC) are left out.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kiosk.config import Config
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.models.registry import ModelRegistry

STEPS = tuple(range(3, 27))  # DC steps of libjpeg qualities ~92 down to ~31
# The 63 shifted grids are searched on a centred window of at most this side: a JPEG cropped by a
# non-multiple of 8 keeps its comb there, and 63 full passes over a 12 MP frame would cost seconds.
SHIFTED_SIDE = 1024
FLAT_STD = 2.0
MIN_BLOCKS = 64
# Blocks used per grid, evenly thinned beyond: z grows with the count (a quality-90 JPEG gives
# z ~ 0.7 n), so thousands are plenty, and a 12 MP frame has 190,000.
MAX_BLOCKS = 20000
MAX_SHIFTED_BLOCKS = 4000
# Flag at z >= Z_THRESHOLD: twice the highest z of 560 never-JPEG validation and training frames
# (stored and camera-simulated, reports/jpeg_forensics/calibration.md: 17.4); every JPEG of
# quality <= 90 there scored z >= 119. The Rayleigh bound alone would put 1 % at z = 11.9.
Z_THRESHOLD = 35.0


STRIP_BLOCKS = 64  # block rows read at a time from a full-resolution plane (512 px)


def _usable_dc(blocks: np.ndarray) -> np.ndarray:
    """DC (orthonormal DCT: block sum / 8) of the usable ones of (n, 64) blocks."""
    blocks = blocks.astype(np.float64)
    usable = (
        (blocks.std(axis=1) >= FLAT_STD) & (blocks.min(axis=1) > 0) & (blocks.max(axis=1) < 255)
    )
    return blocks[usable].sum(axis=1) / 8.0


def _thinned(count: int, limit: int) -> np.ndarray:
    """Indices of the blocks kept, in raster order: every k-th when there are more than `limit`."""
    return np.arange(0, count, max(1, math.ceil(count / limit)))


def _dc_of_offset(plane: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """DC of the usable blocks on the grid at (dy, dx) of a small plane (the shifted window)."""
    sub = plane[dy:, dx:]
    rows, cols = sub.shape[0] // 8, sub.shape[1] // 8
    if rows == 0 or cols == 0:
        return np.empty(0)
    index = _thinned(rows * cols, MAX_SHIFTED_BLOCKS)
    windows = np.lib.stride_tricks.sliding_window_view(sub, (8, 8))
    return _usable_dc(windows[(index // cols) * 8, (index % cols) * 8].reshape(-1, 64))


def _aligned_dc(gray: Any) -> np.ndarray:
    """DC of the usable blocks on the frame's own 8x8 grid, read strip by strip: `gray` may be a
    full-resolution `Luma` (a 50 MP plane is never copied, let alone as float64)."""
    height, width = gray.shape
    rows, cols = height // 8, width // 8
    index = _thinned(rows * cols, MAX_BLOCKS)
    parts = []
    for first in range(0, rows, STRIP_BLOCKS):
        last = min(rows, first + STRIP_BLOCKS)
        chosen = index[(index >= first * cols) & (index < last * cols)] - first * cols
        if not len(chosen):
            continue
        strip = np.asarray(gray[first * 8 : last * 8, 0 : cols * 8])
        windows = np.lib.stride_tricks.sliding_window_view(strip, (8, 8))
        parts.append(_usable_dc(windows[(chosen // cols) * 8, (chosen % cols) * 8].reshape(-1, 64)))
    return np.concatenate(parts) if parts else np.empty(0)


def comb_statistic(gray: Any, offsets: bool = True) -> dict[str, float | int]:
    """Largest Rayleigh z over DC steps (and grid offsets) of a uint8 luma plane (an array or a
    `Luma`), with the step, offset and block count where it was found and its Bonferroni
    p-value bound."""
    height, width = gray.shape
    top = max(0, (height - SHIFTED_SIDE) // 2) // 8 * 8
    left = max(0, (width - SHIFTED_SIDE) // 2) // 8 * 8
    window = np.asarray(gray[top : top + SHIFTED_SIDE + 8, left : left + SHIFTED_SIDE + 8])
    steps = np.array(STEPS, np.float64)
    best: dict = {"z": 0.0, "step": 0, "offset": [0, 0], "blocks": 0}
    grid = [(dy, dx) for dy in range(8) for dx in range(8)] if offsets else [(0, 0)]
    for dy, dx in grid:
        dc = _aligned_dc(gray) if (dy, dx) == (0, 0) else _dc_of_offset(window, dy, dx)
        if len(dc) < MIN_BLOCKS:
            continue
        phases = np.exp(2j * np.pi * dc[:, None] / steps[None, :])
        z = len(dc) * np.abs(phases.mean(axis=0)) ** 2
        index = int(np.argmax(z))
        if z[index] > best["z"]:
            best = {
                "z": float(z[index]),
                "step": int(steps[index]),
                "offset": [dx, dy],
                "blocks": len(dc),
            }
    tests = len(grid) * len(STEPS)
    best["log10_p_bound"] = min(0.0, (math.log(tests) - best["z"]) / math.log(10))
    return best


class JpegCombCheck:
    """Forensic check "jpeg_comb": the DC comb of a JPEG past, on the full-resolution luma."""

    key = "jpeg_comb"
    needs_face = False

    def run(self, capture: Capture, artifacts: Artifacts) -> dict[str, Any]:
        del artifacts  # nothing drawn
        if capture.luma is not None:  # full resolution: resampling would blur the comb away
            gray: Any = capture.luma()
        else:
            gray = (
                capture.rgb
                if capture.rgb.ndim == 2
                else (capture.rgb @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
            )
        result = comb_statistic(gray)
        return {
            **{key: result[key] for key in ("step", "offset", "blocks")},
            "z": round(result["z"], 3),
            "log10_p_bound": round(result["log10_p_bound"], 3),
            "threshold": Z_THRESHOLD,
            "flagged": result["z"] >= Z_THRESHOLD,
        }


def make_jpeg_comb_check(registry: ModelRegistry, config: Config) -> JpegCombCheck | None:
    """Runs beside the JPEG-history model (no model of its own): None when that is not listed."""
    del config
    return JpegCombCheck() if "jpeg_history" in registry.entries else None
