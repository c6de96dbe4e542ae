"""Error Level Analysis and wavelet noise residual: the one implementation training and kiosk share.

ELA (Nimma et al.): re-save the image as JPEG at a fixed quality and take the absolute difference.
Regions whose compression history differs from the rest (pasted from another JPEG, moved off the
8x8 grid, resampled by a morph warp) re-compress differently and stand out. The difference is
amplified with a *fixed* gain and clipped to [0, 1] rather than stretched to each image's maximum:
the absolute error level is the evidence, and max-stretching would blow a clean image's faint
noise up to look like tampering. The second channel is the noise residual left after wavelet
denoising (PyWavelets, VisuShrink soft threshold), which shows where sensor noise is missing or
different. Both are area-averaged to 128x128 for the CNN.
"""

from __future__ import annotations

import cv2
import numpy as np
import pywt

from kiosk.contract.errors import InputError

INPUT_SIDE = 128
ELA_GAIN = 12.0  # an error of 255/12 ~ 21 grey levels saturates
RESIDUAL_GAIN = 8.0  # residuals of ~32 grey levels saturate
WAVELET = "db4"
MIN_SIDE = 16  # smaller images carry no usable 8x8-block statistics


def _check(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"expected an RGB uint8 image, got {rgb.dtype} {rgb.shape}")
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise InputError(
            f"image {rgb.shape[1]}x{rgb.shape[0]} is too small for error level analysis "
            f"(need at least {MIN_SIDE} px a side)"
        )


def ela_map(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Full-resolution ELA in [0, 1] (H, W) float32: max over colours of |image - resaved|."""
    _check(rgb)
    ok, encoded = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError("JPEG re-encoding failed")
    resaved = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    difference = np.abs(rgb.astype(np.int16) - resaved.astype(np.int16)).max(axis=2)
    return np.minimum(difference.astype(np.float32) * (ELA_GAIN / 255.0), 1.0)


def noise_residual(rgb: np.ndarray) -> np.ndarray:
    """|grey - wavelet-denoised grey| amplified, in [0, 1] (H, W) float32."""
    _check(rgb)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    coeffs = pywt.wavedec2(grey, WAVELET, level=2)
    finest = coeffs[-1][-1]
    sigma = float(np.median(np.abs(finest))) / 0.6745
    threshold = sigma * np.sqrt(2.0 * np.log(grey.size))
    denoised_coeffs = [coeffs[0]] + [
        tuple(pywt.threshold(band, threshold, mode="soft") for band in level)
        for level in coeffs[1:]
    ]
    denoised = pywt.waverec2(denoised_coeffs, WAVELET)[: grey.shape[0], : grey.shape[1]]
    return np.minimum(np.abs(grey - denoised) * (RESIDUAL_GAIN / 255.0), 1.0).astype(np.float32)


def shrink(channel: np.ndarray, side: int = INPUT_SIDE) -> np.ndarray:
    """Area-average a full-resolution map to side x side (aspect ratio not kept, as Nimma)."""
    return cv2.resize(channel, (side, side), interpolation=cv2.INTER_AREA)


def cnn_input(rgb: np.ndarray, quality: int) -> np.ndarray:
    """(128, 128, 2) uint8: ELA and wavelet residual x 255, the tamper CNN's input."""
    return stack_maps(ela_map(rgb, quality), noise_residual(rgb))


def stack_maps(ela: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Shrink both [0, 1] maps and store them as uint8 (the model divides by 255 itself)."""
    stacked = np.stack([shrink(ela), shrink(residual)], axis=-1)
    return np.rint(stacked * 255.0).astype(np.uint8)


def heat_map_png(ela: np.ndarray) -> bytes:
    """A colour (JET) PNG of a full-resolution ELA map for the operator / engineer."""
    colour = cv2.applyColorMap(np.rint(ela * 255).astype(np.uint8), cv2.COLORMAP_JET)
    ok, encoded = cv2.imencode(".png", colour)
    if not ok:
        raise InputError("PNG encoding of the ELA heat map failed")
    return encoded.tobytes()
