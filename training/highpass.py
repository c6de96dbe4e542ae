"""Fixed high-pass kernels of the forensic nets, in numpy only: the Keras nets here and the
PyTorch trainers that run where TensorFlow is not (an accelerator) take them from one place."""

from __future__ import annotations

import numpy as np

# The KV kernel (Ker's 5x5 residual, SRM's "KV"): the JPEG detector's first layer and the
# second of the splice CNN's filters.
KV_KERNEL = (
    np.array(
        [
            [-1, 2, -2, 2, -1],
            [2, -6, 8, -6, 2],
            [-2, 8, -12, 8, -2],
            [2, -6, 8, -6, 2],
            [-1, 2, -2, 2, -1],
        ],
        np.float32,
    )
    / 12.0
)


def srm_filters() -> np.ndarray:
    """(3, 5, 5): the SRM trio of Zhou et al.'s RGB-N noise stream (a second-order 3x3
    residual, the KV kernel, a horizontal second difference)."""
    first = np.zeros((5, 5), np.float32)
    first[1:4, 1:4] = np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]) / 4
    third = np.zeros((5, 5), np.float32)
    third[2, 1:4] = np.array([1, -2, 1]) / 2
    return np.stack([first, KV_KERNEL, third])
