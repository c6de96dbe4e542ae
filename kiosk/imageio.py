"""Safe image decoding: every input becomes RGB uint8 or a clear InputError.

- Size is read from the header and images over `max_pixels` are refused before decoding.
- EXIF orientation is applied (phones and some cameras store it instead of rotating pixels).
- 16-bit images are scaled to 8 bits (value / 257), grayscale is replicated to RGB, palette
  images are expanded, and transparency (RGBA, LA, PA) is composited on white, as a print would.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kiosk.errors import InputError

MAX_PIXELS = 50_000_000


def load_rgb(path: Path | str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not an image") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    return decode_rgb(data, name=str(path), max_pixels=max_pixels)


def decode_rgb(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (any format Pillow reads) to RGB uint8 (H, W, 3)."""
    if not data:
        raise InputError(f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(
                    f"{name} is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the "
                    f"{max_pixels / 1e6:.0f} MP limit; downscale it first"
                )
            image.load()
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{name} is not an image file this kiosk can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name} is corrupt or truncated ({exc})") from None
    try:
        return to_rgb(ImageOps.exif_transpose(image))
    except (OSError, ValueError) as exc:
        raise InputError(f"{name} could not be converted to RGB ({exc})") from None


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
