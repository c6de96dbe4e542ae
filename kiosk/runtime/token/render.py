"""Cutting the token photo out of the full-resolution still, and writing it for print.

One affine warp per output from the still (never a copy of the whole still): the region the
crop covers is first reduced with area averaging when the output is smaller (no aliasing on a
12 MP still), then rotated and scaled with bicubic interpolation. When the face is too small for
the output resolution (the output would enlarge the still by SR_MIN_UPSCALE or more) and the
bundle has the x4 super-resolution model (`kiosk/runtime/forensics/sr.py`), the crop is cut at
the still's own resolution (at most 4x under the output), its luma is super-resolved x4 in
overlapping 128 px tiles and its chroma enlarged bicubically, and that result is used.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from kiosk.config import PrintSheet, TokenFormat
from kiosk.runtime.forensics.colour import rgb_to_ycbcr, ycbcr_to_rgb
from kiosk.runtime.forensics.sr import SCALE as SR_SCALE
from kiosk.runtime.forensics.sr import SrCheck
from kiosk.runtime.token.geometry import Placement, mm_to_px

SR_MIN_UPSCALE = 2.0  # below 2x, bicubic enlargement loses little; the SR model is a x4 model
SR_TILE_OVERLAP = 8  # input px shared by neighbouring tiles, blended to hide tile seams
JPEG_QUALITY = 95
EXIF_X_RESOLUTION, EXIF_Y_RESOLUTION, EXIF_RESOLUTION_UNIT = 0x011A, 0x011B, 0x0128
EXIF_INCH = 2
SHEET_COPIES = 4  # copies per print sheet (at most; fewer when the sheet holds fewer)
SHEET_GAP_MM = 4.0  # between copies and to the sheet's edge, room for the cutter
CUT_LINE = (200, 200, 200)  # light grey cutting guides on the print sheet


def warp(
    still: np.ndarray, placement: Placement, sr: SrCheck | None = None
) -> tuple[np.ndarray, bool]:
    """(output RGB, whether SR made it) for one placement of the still. Where the output
    reaches past the still, its edge pixels are repeated (the framing check refuses such
    frames; `outside_frame` in the token's geometry says how much)."""
    if sr is not None and placement.scale >= SR_MIN_UPSCALE:
        factor = min(placement.scale, float(SR_SCALE))
        width, height = placement.size
        small = (math.ceil(width / factor), math.ceil(height / factor))
        low = _warp(still, placement.matrix / factor, small)
        big = super_resolve(low, sr)
        # The ceil above adds under one LR px of overscan on the far edges: crop it, resize.
        keep_w, keep_h = round(width / factor * SR_SCALE), round(height / factor * SR_SCALE)
        interpolation = cv2.INTER_AREA if keep_w > width else cv2.INTER_CUBIC
        return cv2.resize(big[:keep_h, :keep_w], (width, height), interpolation=interpolation), True
    return _warp(still, placement.matrix, placement.size), False


def _warp(still: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """warpAffine restricted to the still's region under the output; area reduction first when
    the output is smaller than that region."""
    width, height = size
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], np.float64)
    in_still = corners @ inverse.T
    rows, cols = still.shape[:2]
    x0, y0 = np.floor(in_still.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(in_still.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cols), min(y1, rows)
    if x1 <= x0 or y1 <= y0:
        raise ValueError("the token crop lies wholly outside the still")
    region = still[y0:y1, x0:x1]
    local = matrix.copy()
    local[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)
    # Reduce by the whole factor first (OpenCV's fast integer-ratio area path); the warp then
    # shrinks by at most 2x more, which its bicubic kernel handles.
    step = int(1.0 / math.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if step >= 2:
        rows_kept, cols_kept = region.shape[0] // step * step, region.shape[1] // step * step
        region = cv2.resize(
            region[:rows_kept, :cols_kept],
            (cols_kept // step, rows_kept // step),
            interpolation=cv2.INTER_AREA,
        )
        local[:, :2] *= step
    return cv2.warpAffine(
        region,
        local,
        (width, height),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )


def super_resolve(rgb: np.ndarray, sr: SrCheck) -> np.ndarray:
    """RGB (any size) -> RGB 4x larger: the SR model on the luma in overlapping tiles of its
    input size (blended with tent weights), bicubic on the chroma."""
    side = sr.input_side
    height, width = rgb.shape[:2]
    pad_h, pad_w = max(side - height, 0), max(side - width, 0)
    padded = cv2.copyMakeBorder(rgb, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
    ycbcr = rgb_to_ycbcr(padded)
    luma = ycbcr[..., 0] / 255.0
    rows, cols = luma.shape
    out_side = side * SR_SCALE
    accumulated = np.zeros((rows * SR_SCALE, cols * SR_SCALE), np.float32)
    weights = np.zeros_like(accumulated)
    ramp = np.minimum(np.arange(out_side) + 1, out_side - np.arange(out_side)).astype(np.float32)
    window = np.outer(ramp, ramp)
    for top in _tile_starts(rows, side):
        for left in _tile_starts(cols, side):
            tile = luma[top : top + side, left : left + side]
            result = sr.model(tile[None, :, :, None])[0, :, :, 0]
            y, x = top * SR_SCALE, left * SR_SCALE
            accumulated[y : y + out_side, x : x + out_side] += result * window
            weights[y : y + out_side, x : x + out_side] += window
    big = cv2.resize(ycbcr, (cols * SR_SCALE, rows * SR_SCALE), interpolation=cv2.INTER_CUBIC)
    big[..., 0] = accumulated / weights * 255.0
    return ycbcr_to_rgb(big)[: height * SR_SCALE, : width * SR_SCALE]


def _tile_starts(length: int, side: int) -> list[int]:
    stride = side - 2 * SR_TILE_OVERLAP
    starts = list(range(0, max(length - side, 0) + 1, stride))
    if starts[-1] + side < length:
        starts.append(length - side)
    return starts


def encode_jpeg(rgb: np.ndarray, dpi: int, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG with the print resolution in both the JFIF density and EXIF X/YResolution (inch)."""
    exif = Image.Exif()
    exif[EXIF_X_RESOLUTION] = IFDRational(dpi, 1)
    exif[EXIF_Y_RESOLUTION] = IFDRational(dpi, 1)
    exif[EXIF_RESOLUTION_UNIT] = EXIF_INCH
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, dpi=(dpi, dpi), exif=exif.tobytes())
    return buffer.getvalue()


def print_sheet(
    token_jpeg: bytes, fmt: TokenFormat, sheet: PrintSheet, copies: int = SHEET_COPIES
) -> bytes:
    """`copies` copies of the token photo at their true size on one sheet (landscape or
    portrait, whichever holds more), with light cutting guides; a JPEG at the sheet's dpi.
    ValueError when not even one copy fits."""
    photo_w, photo_h = mm_to_px(fmt.width_mm, sheet.dpi), mm_to_px(fmt.height_mm, sheet.dpi)
    gap = mm_to_px(SHEET_GAP_MM, sheet.dpi)
    long_px = mm_to_px(max(sheet.width_mm, sheet.height_mm), sheet.dpi)
    short_px = mm_to_px(min(sheet.width_mm, sheet.height_mm), sheet.dpi)
    layouts = []
    for width, height in ((long_px, short_px), (short_px, long_px)):
        columns = (width - gap) // (photo_w + gap)
        rows = (height - gap) // (photo_h + gap)
        layouts.append((min(columns * rows, copies), width, height, columns, rows))
    fits, width, height, columns, rows = max(layouts, key=lambda layout: layout[0])
    if fits < 1:
        raise ValueError(
            f"a {fmt.width_mm}x{fmt.height_mm} mm photo does not fit on a "
            f"{sheet.width_mm}x{sheet.height_mm} mm sheet; change [token.print_sheet]"
        )
    with Image.open(io.BytesIO(token_jpeg)) as decoded:
        photo = np.asarray(decoded.convert("RGB"))
    photo = cv2.resize(photo, (photo_w, photo_h), interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 255, np.uint8)
    columns = min(columns, fits)
    used_rows = math.ceil(fits / columns)
    left0 = (width - columns * photo_w - (columns - 1) * gap) // 2
    top0 = (height - used_rows * photo_h - (used_rows - 1) * gap) // 2
    for index in range(fits):
        row, column = divmod(index, columns)
        left, top = left0 + column * (photo_w + gap), top0 + row * (photo_h + gap)
        canvas[top : top + photo_h, left : left + photo_w] = photo
        cv2.rectangle(canvas, (left - 1, top - 1), (left + photo_w, top + photo_h), CUT_LINE, 1)
    return encode_jpeg(canvas, sheet.dpi)
