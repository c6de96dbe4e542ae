"""Safe image decoding: every input becomes RGB uint8 or a clear InputError, in bounded memory.

The order of the checks is the point (docs/input.md):
1. The path is opened without blocking (O_NONBLOCK) and must be a regular file: directories,
   FIFOs, devices and sockets are refused from os.fstat, so `/dev/zero` or a pipe never hangs.
2. Its byte size is checked against `max_bytes` before anything is read.
3. Pillow reads only the header, and only for the formats a kiosk needs (KIOSK_FORMATS: EPS would
   reach Ghostscript, PSD/ICO/... add attack surface for nothing); the pixel count is checked.
4. Only then is it decoded, streaming from the file. With `work_pixels`, JPEGs are decoded at
   1/2..1/8 scale by libjpeg itself (Image.draft) and everything is area-downscaled in Pillow
   before it becomes a numpy array. Formats decoded whole (PNG, BMP, TIFF, WebP) have their own,
   lower pixel limit, since their full decode (4 bytes a pixel) is what memory must hold.

Conversion rules: EXIF orientation is applied (phones and some cameras store it instead of
rotating pixels); 16-bit images are scaled to 8 bits (value / 257), grayscale is replicated to
RGB, palette images are expanded, and transparency (RGBA, LA, PA) is composited on white, as a
print would.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import cv2
import numpy as np
from PIL import (  # the plugins of KIOSK_FORMATS, registered explicitly: Image.open needs them
    BmpImagePlugin,  # noqa: F401
    Image,
    ImageOps,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

from kiosk.contract.errors import InputError

if TYPE_CHECKING:
    from kiosk.config import InputConfig

MAX_PIXELS = 50_000_000
MAX_FULL_DECODE_PIXELS = 16_000_000
MAX_BYTES = 200 * 2**20
# What a kiosk reads. "JPEG" also opens MPO (a JPEG with a second picture, as phones write them).
KIOSK_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")
REDUCED_DECODE_FORMATS = {"JPEG", "MPO"}  # libjpeg scales during decoding (Image.draft)
_PILLOW_RESIZABLE = {"RGB", "RGBA", "L", "LA"}


@dataclass(frozen=True)
class Limits:
    """What an input may cost: pixels (any format, and formats decoded whole) and file bytes."""

    max_pixels: int = MAX_PIXELS
    max_full_decode_pixels: int = MAX_FULL_DECODE_PIXELS
    max_bytes: int = MAX_BYTES

    @classmethod
    def from_config(cls, config: InputConfig) -> Limits:
        return cls(
            int(config.max_megapixels * 1e6),
            int(config.max_full_decode_megapixels * 1e6),
            config.max_file_mb * 2**20,
        )

    @classmethod
    def full(cls, max_pixels: int = MAX_PIXELS) -> Limits:
        """Every format up to `max_pixels` (desktop tools that need full-resolution pixels)."""
        return cls(max_pixels, max_pixels, MAX_BYTES)


@dataclass(frozen=True)
class Decoded:
    """An image as RGB uint8 and how much it was shrunk (original px per working px)."""

    rgb: np.ndarray
    scale: float = 1.0


def load_rgb(path: Path | str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as full-resolution RGB uint8 (H, W, 3)."""
    return load_image(path, Limits.full(max_pixels)).rgb


def load_image(
    path: Path | str, limits: Limits = Limits(), work_pixels: int | None = None
) -> Decoded:
    """Read an image file as RGB uint8, area-downscaled to at most `work_pixels` when given."""
    with open_checked(path, limits) as (image, name):
        return _decode(image, name, work_pixels)


class Luma:
    """Full-resolution BT.601 luma held once, by Pillow; `luma[y0:y1, x0:x1]` copies out just
    that window. The JPEG-history check reads a few hundred 64-px patches, so a 50 MP file's luma
    never exists twice (Pillow's buffer plus a numpy copy, or OpenCV's decode buffers: ~100 MB)."""

    def __init__(self, image: Image.Image) -> None:
        self._image = image  # mode "L"

    @property
    def shape(self) -> tuple[int, int]:
        return self._image.height, self._image.width

    def __getitem__(self, window: tuple[slice, slice]) -> np.ndarray:
        rows, cols = window  # clipped to the plane, as numpy slices are (Pillow would pad)
        height, width = self.shape
        x0, x1, _ = cols.indices(width)
        y0, y1, _ = rows.indices(height)
        return np.asarray(self._image.crop((x0, y0, max(x0, x1), max(y0, y1))))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole plane (a copy): for tests and small images."""
        return np.asarray(self._image, dtype=dtype)


def load_luma(path: Path | str, limits: Limits = Limits()) -> Luma:
    """Full-resolution BT.601 luma in the file's stored orientation.

    For JPEGs this is the Y plane itself, decoded without colour (1 byte a pixel): what JPEG
    compressed, and what the JPEG-history detector was trained on (grayscale JPEGs). No EXIF
    rotation: the 8x8 block grid lives in the stored orientation.
    """
    with open_checked(path, limits) as (image, name):
        try:
            if image.format in REDUCED_DECODE_FORMATS and image.mode in ("RGB", "YCbCr"):
                image.draft("L", image.size)
            image.load()
            if image.mode == "L":
                # A second Image on the same decoded core: closing the file's Image drops only
                # its reference, and no 50 MP copy is made.
                return Luma(image._new(image.im))
            if image.mode == "RGB":
                return Luma(image.convert("L"))
            return Luma(Image.fromarray(cv2.cvtColor(to_rgb(image), cv2.COLOR_RGB2GRAY)))
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{name} is corrupt or truncated ({exc})") from None


def decode_rgb(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (one of KIOSK_FORMATS) to RGB uint8 (H, W, 3)."""
    if not data:
        raise InputError(f"{name} is empty (0 bytes)")
    limits = Limits.full(max_pixels)
    with _header(io.BytesIO(data), name, limits) as image:
        return _decode(image, name, None).rgb


@contextmanager
def open_checked(path: Path | str, limits: Limits) -> Iterator[tuple[Image.Image, str]]:
    """A lazily opened image whose file kind, byte size, format and pixel count are checked."""
    name = str(path)
    with (
        _open_regular(Path(path), limits.max_bytes) as stream,
        _header(stream, name, limits) as image,
    ):
        yield image, name


@contextmanager
def _open_regular(path: Path, max_bytes: int) -> Iterator[BinaryIO]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path} is {file_kind(info.st_mode)}, not an image file; give a file")
        if info.st_size == 0:
            raise InputError(f"{path} is empty (0 bytes)")
        if info.st_size > max_bytes:
            raise InputError(
                f"{path} is {info.st_size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB "
                "limit ([input] max_file_mb); re-encode or downscale it first"
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as stream:
        yield stream


def file_kind(mode: int) -> str:
    """'a directory', 'a pipe (FIFO)', ... for an st_mode that is not a regular file."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


@contextmanager
def _header(stream: BinaryIO, name: str, limits: Limits) -> Iterator[Image.Image]:
    """Pillow reads the header only; the size and format checks run before any decoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(stream, formats=KIOSK_FORMATS)
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ):
            raise InputError(
                f"{name} is not an image this kiosk reads (JPEG, PNG, BMP, TIFF or WebP)"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{name} is corrupt or truncated ({exc})") from None
        with image:
            width, height = image.size
            pixels = width * height
            if pixels > limits.max_pixels:
                raise InputError(
                    f"{name} is {width}x{height} = {pixels / 1e6:.1f} megapixels, over the "
                    f"{limits.max_pixels / 1e6:.1f} MP limit; downscale it first"
                )
            whole = image.format not in REDUCED_DECODE_FORMATS
            if whole and pixels > limits.max_full_decode_pixels:
                raise InputError(
                    f"{name} is a {width}x{height} = {pixels / 1e6:.1f} MP {image.format}, over "
                    f"the {limits.max_full_decode_pixels / 1e6:.1f} MP limit for formats decoded "
                    "whole ([input] max_full_decode_megapixels); save it as JPEG or downscale it"
                )
            yield image


def _decode(image: Image.Image, name: str, work_pixels: int | None) -> Decoded:
    original = image.size
    target = _target_size(original, work_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if target != original and image.format in REDUCED_DECODE_FORMATS:
                image.draft(image.mode, target)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{name} is not an image this kiosk can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name} is corrupt or truncated ({exc})") from None
    try:
        if image.size != target and image.mode in _PILLOW_RESIZABLE:
            image = image.resize(target, Image.Resampling.BOX)
        rgb = to_rgb(ImageOps.exif_transpose(image))
    except (OSError, ValueError) as exc:
        raise InputError(f"{name} could not be converted to RGB ({exc})") from None
    height, width = rgb.shape[:2]
    size = _target_size((width, height), work_pixels)
    if size != (width, height):  # modes Pillow does not resize (16-bit, CMYK, palette)
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return Decoded(rgb, max(original) / max(rgb.shape[:2]))


def _target_size(size: tuple[int, int], work_pixels: int | None) -> tuple[int, int]:
    width, height = size
    if not work_pixels or width * height <= work_pixels:
        return size
    shrink = math.sqrt(width * height / work_pixels)
    return max(1, int(width / shrink)), max(1, int(height / shrink))


def to_rgb(image: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> RGB uint8 array, following the module's conversion rules."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.uint32)
        scale = 257 if array.max(initial=0) > 255 or image.mode.startswith("I;16") else 1
        gray = np.clip(array // scale, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        gray = np.clip(np.asarray(image, np.float32), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(array)
