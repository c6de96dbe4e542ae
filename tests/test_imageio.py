import io

import numpy as np
import pytest
from PIL import Image

from kiosk.contract.errors import InputError
from kiosk.runtime.imageio import decode_rgb, load_rgb


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_rgb(path)


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image at all")
    with pytest.raises(InputError, match="not an image"):
        load_rgb(path)


def test_truncated_jpeg_is_refused(astronaut):
    data = _encode(Image.fromarray(astronaut), "JPEG", quality=90)
    with pytest.raises(InputError, match="corrupt or truncated"):
        decode_rgb(data[: len(data) // 2])


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_rgb(tmp_path / "missing.png")
    with pytest.raises(InputError, match="directory"):
        load_rgb(tmp_path)


def test_huge_image_refused_from_header():
    # 8000x7000 = 56 MP; a 1-bit PNG of that size is only a few kB on disk.
    data = _encode(Image.new("1", (8000, 7000)))
    assert len(data) < 100_000
    with pytest.raises(InputError, match="megapixels"):
        decode_rgb(data)
    assert decode_rgb(data, max_pixels=60_000_000).shape == (7000, 8000, 3)


def test_sixteen_bit_grayscale_is_scaled():
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    rgb = decode_rgb(_encode(Image.fromarray(values)))
    assert rgb.dtype == np.uint8
    assert rgb.shape == (1, 3, 3)
    assert rgb[0, :, 0].tolist() == [0, 128, 255]


def test_rgba_composited_on_white_and_gray_replicated():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red; the rest is transparent -> white
    rgb = decode_rgb(_encode(Image.fromarray(rgba, "RGBA")))
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[1, 1].tolist() == [255, 255, 255]
    gray = decode_rgb(_encode(Image.fromarray(np.full((3, 4), 77, np.uint8), "L")))
    assert gray.shape == (3, 4, 3) and (gray == 77).all()


def test_exif_orientation_is_applied(astronaut):
    wide = astronaut[:200, :, :]  # 200 x 512
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _encode(Image.fromarray(wide), "JPEG", exif=exif.tobytes())
    assert decode_rgb(data).shape == (512, 200, 3)
