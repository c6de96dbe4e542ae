"""JPEG zigzag ordering of DCT subbands, shared by the index's low-pass and the DCT ciphers."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=32)
def zigzag_order(size: int) -> np.ndarray:
    """Flat (row-major) indices of a size x size block in zigzag order, lowest frequency first.

    Anti-diagonals run in order of increasing frequency; odd ones are walked downwards (row
    ascending) and even ones upwards, as in JPEG.
    """
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    diagonal = (rows + cols).ravel()
    within = np.where(diagonal % 2 == 1, rows.ravel(), -rows.ravel())
    order = np.lexsort((within, diagonal))
    order.setflags(write=False)
    return order


def zigzag_ranks(size: int) -> np.ndarray:
    """Zigzag rank of every subband, as a size x size array."""
    rank = np.empty(size * size, dtype=np.int64)
    rank[zigzag_order(size)] = np.arange(size * size)
    return rank.reshape(size, size)
