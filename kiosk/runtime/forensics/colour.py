"""ITU-R BT.601 YCbCr (studio range), the colour space SR literature scores PSNR/SSIM in.

Training and the kiosk both convert through here, so the network sees the same luma on both sides.
"""

from __future__ import annotations

import numpy as np

_TO_YCBCR = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], np.float32
)
_OFFSET = np.array([16.0, 128.0, 128.0], np.float32)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 YCbCr in 0..255 (Y in 16..235, as MATLAB's rgb2ycbcr)."""
    return rgb.astype(np.float32) / 255.0 @ _TO_YCBCR.T + _OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """float YCbCr in 0..255 -> uint8 RGB, rounded and clipped."""
    rgb = (ycbcr.astype(np.float32) - _OFFSET) @ np.linalg.inv(_TO_YCBCR).T * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def luma(image: np.ndarray) -> np.ndarray:
    """Y (0..255 float32) of an RGB image, or of a grey one taken as R = G = B."""
    if image.ndim == 2:
        return 16.0 + image.astype(np.float32) * (219.0 / 255.0)
    return rgb_to_ycbcr(image)[..., 0]
