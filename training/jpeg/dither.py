"""The two classical JPEG anti-forensic baselines of the paper's tables, in numpy.

F1 (Stamm, Tjoa, Lin, Liu 2010): JPEG leaves every AC DCT coefficient on a multiple of its
quantization step (a "comb" histogram). For each of the 63 AC frequencies a Laplacian is fitted to
the quantized coefficients (the closed-form maximum-likelihood estimate of the paper), and each
coefficient is replaced by a draw from that Laplacian restricted to its quantization bin; the DC
coefficients are left as they are. Frequencies whose coefficients are all zero are left at zero.

F2 (after Stamm & Liu 2011): F1, then deblocking by a 3x3 median filter and low-power additive
Gaussian noise (sigma 1 grey level here), which removes the 8x8 blocking that the dither leaves.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.fft import dctn, idctn

BLOCK = 8


def to_blocks(image: np.ndarray) -> np.ndarray:
    """(H, W) -> (H/8, W/8, 8, 8); H and W must be multiples of 8."""
    height, width = image.shape
    return image.reshape(height // BLOCK, BLOCK, width // BLOCK, BLOCK).swapaxes(1, 2)


def from_blocks(blocks: np.ndarray) -> np.ndarray:
    rows, cols = blocks.shape[:2]
    return blocks.swapaxes(1, 2).reshape(rows * BLOCK, cols * BLOCK)


def block_dct(image: np.ndarray) -> np.ndarray:
    """JPEG's orthonormal 8x8 DCT-II of the level-shifted pixels, per block."""
    return dctn(to_blocks(image.astype(np.float64) - 128.0), axes=(2, 3), norm="ortho")


def block_idct(coefficients: np.ndarray) -> np.ndarray:
    pixels = from_blocks(idctn(coefficients, axes=(2, 3), norm="ortho")) + 128.0
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def laplacian_rate(indices: np.ndarray, step: float) -> float | None:
    """ML Laplacian rate lambda from quantized indices (Stamm et al. 2010, eq. for gamma).

    None when the frequency carries no information (every coefficient quantized to zero, or the
    estimate is degenerate); the caller then leaves those coefficients untouched.
    """
    count = indices.size
    zeros = int(np.sum(indices == 0))
    nonzero = count - zeros
    if nonzero == 0:
        return None
    magnitude_sum = float(np.sum(np.abs(indices))) * step
    denominator = 2 * count * step + 4 * magnitude_sum
    discriminant = zeros**2 * step**2 - (2 * nonzero * step - 4 * magnitude_sum) * denominator
    gamma = (-zeros * step + np.sqrt(max(discriminant, 0.0))) / denominator
    if not 0 < gamma < 1:
        return None
    return float(-2.0 / step * np.log(gamma))


def _truncated_exponential(rate: float, width: float, shape: tuple, rng: np.random.Generator):
    """Samples of density ~ exp(-rate * t) on [0, width) by inverse CDF."""
    uniform = rng.random(shape)
    if rate * width < 1e-6:
        return uniform * width
    return -np.log1p(-uniform * (1.0 - np.exp(-rate * width))) / rate


def dither_coefficients(
    coefficients: np.ndarray, table: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Replace each AC coefficient by a Laplacian draw inside its quantization bin."""
    out = coefficients.copy()
    for u in range(BLOCK):
        for v in range(BLOCK):
            if u == 0 and v == 0:
                continue
            step = float(table[u, v])
            indices = np.round(coefficients[:, :, u, v] / step)
            rate = laplacian_rate(indices, step)
            if rate is None:
                continue
            shape = indices.shape
            # Zero bin: symmetric Laplacian on [-step/2, step/2).
            zero_draw = _truncated_exponential(rate, step / 2, shape, rng)
            zero_draw *= np.where(rng.random(shape) < 0.5, -1.0, 1.0)
            # Non-zero bin k: density decays away from zero across [|k|step - step/2, +step/2).
            offset = _truncated_exponential(rate, step, shape, rng) - step / 2
            nonzero_draw = np.sign(indices) * (np.abs(indices) * step + offset)
            out[:, :, u, v] = np.where(indices == 0, zero_draw, nonzero_draw)
    return out


def dither_f1(image: np.ndarray, table: np.ndarray, seed: int = 0) -> np.ndarray:
    """F1: Stamm et al. 2010 DCT-coefficient dither of a decoded JPEG (uint8, 8-aligned crop).

    Pixels outside the largest 8-aligned top-left region are left unchanged.
    """
    rng = np.random.default_rng(seed)
    height, width = (s - s % BLOCK for s in image.shape)
    out = image.copy()
    region = image[:height, :width]
    out[:height, :width] = block_idct(dither_coefficients(block_dct(region), table, rng))
    return out


def dither_f2(image: np.ndarray, table: np.ndarray, seed: int = 0, sigma: float = 1.0):
    """F2: F1 followed by 3x3 median deblocking and Gaussian noise of `sigma` grey levels."""
    rng = np.random.default_rng(seed + 1)
    smoothed = cv2.medianBlur(dither_f1(image, table, seed), 3).astype(np.float64)
    noisy = smoothed + rng.normal(0.0, sigma, smoothed.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def comb_fraction(image: np.ndarray, table: np.ndarray, tolerance: float = 0.1) -> float:
    """Fraction of non-zero-quantized AC coefficients within tolerance*step of a step multiple.

    Near 1 for a decoded JPEG (the comb); well below for dithered coefficients. Used by tests
    and the report to show that F1/F2 erase the comb.
    """
    height, width = (s - s % BLOCK for s in image.shape)
    coefficients = block_dct(image[:height, :width])
    ratio = coefficients / table
    indices = np.round(ratio)
    mask = indices != 0
    mask[:, :, 0, 0] = False
    if not mask.any():
        return float("nan")
    return float(np.mean(np.abs(ratio - indices)[mask] < tolerance))
