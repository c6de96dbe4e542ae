"""Every input ends in a frame or a clear error, in bounded memory (issue 10: defects 5, 8, 9)."""

import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from kiosk.contract.errors import InputError
from kiosk.runtime.cameras.sources import open_path
from kiosk.runtime.imageio import Limits, load_image, load_luma


def _save(path: Path, image: Image.Image, fmt: str, **kwargs) -> Path:
    image.save(path, format=fmt, **kwargs)
    return path


def _frames(path: Path, **kwargs) -> list:
    source = open_path(path, **kwargs)
    try:
        return list(source.frames())
    finally:
        source.close()


def test_fifo_and_device_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # nobody writes: a blocking open would hang here
    with pytest.raises(InputError, match="pipe"):
        load_image(fifo)
    (frame,) = _frames(fifo)
    assert frame.image is None and "pipe" in frame.error
    with pytest.raises(InputError, match="device"):
        load_image("/dev/zero")  # read whole, it never ends
    (frame,) = _frames(Path("/dev/zero"))
    assert "device" in frame.error


def test_huge_file_refused_from_its_size_before_reading(tmp_path):
    path = tmp_path / "huge.jpg"
    with path.open("wb") as handle:  # sparse: 3 GiB on paper, a few bytes on disk
        handle.write(b"\xff\xd8\xff\xe0")
        handle.truncate(3 * 2**30)
    with pytest.raises(InputError, match="MiB"):
        load_image(path)
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    small = _save(tmp_path / "small.png", Image.fromarray(noise), "PNG")
    with pytest.raises(InputError, match="max_file_mb"):
        load_image(small, Limits(max_bytes=100))


def test_pixel_limits_come_from_the_header(tmp_path):
    png = _save(tmp_path / "big.png", Image.new("RGB", (300, 200)), "PNG")
    jpeg = _save(tmp_path / "big.jpg", Image.new("RGB", (300, 200)), "JPEG")
    with pytest.raises(InputError, match="megapixels, over"):
        load_image(png, Limits(max_pixels=50_000))
    # PNG is decoded whole, so it has its own lower limit; the same JPEG is decoded scaled.
    limits = Limits(max_full_decode_pixels=50_000)
    with pytest.raises(InputError, match="max_full_decode_megapixels"):
        load_image(png, limits)
    assert load_image(jpeg, limits, work_pixels=20_000).rgb.shape[0] <= 200


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("photo.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"),
        ("photo.psd", b"8BPS\x00\x01" + bytes(6) + b"\x00\x03\x00\x00\x00\x10\x00\x00\x00\x10"),
    ],
)
def test_formats_outside_the_kiosk_list_are_refused(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match="JPEG, PNG, BMP, TIFF or WebP"):
        load_image(path)


def test_ico_that_pillow_could_read_is_refused(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="ICO")
    path = tmp_path / "icon.png"  # the suffix does not matter, the content does
    path.write_bytes(buffer.getvalue())
    assert Image.open(path).format == "ICO"
    with pytest.raises(InputError, match="not an image this kiosk reads"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_work_copy_is_downscaled_with_its_scale(tmp_path, astronaut, fmt):
    big = cv2.resize(astronaut, (1600, 1200))
    path = _save(tmp_path / f"big.{fmt.lower()}", Image.fromarray(big), fmt)
    decoded = load_image(path, work_pixels=300_000)
    height, width = decoded.rgb.shape[:2]
    assert width * height <= 300_000 and width > 500
    assert decoded.scale == pytest.approx(1600 / width)
    assert load_image(path).rgb.shape == (1200, 1600, 3)  # no work size: full resolution
    small = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(decoded.rgb.astype(int) - small).mean() < 4  # same picture, smaller


def test_luma_is_full_resolution_y_plane(tmp_path, astronaut):
    path = _save(tmp_path / "a.jpg", Image.fromarray(astronaut), "JPEG", quality=80)
    luma = load_luma(path)
    assert luma.shape == astronaut.shape[:2]
    decoded = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)  # libjpeg's Y plane as well
    whole = np.asarray(luma)
    assert whole.dtype == np.uint8 and np.array_equal(whole, decoded)
    assert np.array_equal(luma[64:128, 192:256], decoded[64:128, 192:256])  # one patch


def test_unreadable_folder_is_an_error_frame(tmp_path, monkeypatch):
    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", refuse)
    (frame,) = _frames(tmp_path)
    assert frame.image is None and "cannot list folder" in frame.error


def _video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


def test_video_without_frames_and_truncated_video_are_errors(tmp_path):
    (frame,) = _frames(_video(tmp_path / "empty.avi", 0))
    assert frame.image is None and "no readable frame" in frame.error
    full = _frames(_video(tmp_path / "full.avi", 20))
    assert len(full) == 20 and all(f.error is None for f in full)
    data = (tmp_path / "full.avi").read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])
    frames = _frames(truncated)
    assert frames[-1].image is None and "truncated" in frames[-1].error
    assert 0 < len(frames) - 1 < 20 and all(f.image is not None for f in frames[:-1])


def test_check_cli_goes_on_after_unreadable_folder_and_empty_video(tmp_path, capsys, monkeypatch):
    from kiosk.cli import main

    folder = tmp_path / "locked"
    folder.mkdir()
    video = _video(tmp_path / "empty.avi", 0)
    original = Path.iterdir

    def iterdir(self):
        if self == folder:
            raise PermissionError(13, "Permission denied")
        return original(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    code = main(["check", "--json", str(folder), str(video)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 2
    assert [r["decision"] for r in lines[:-1]] == ["error", "error"]
    assert "cannot list folder" in lines[0]["error"] and "no readable frame" in lines[1]["error"]


class _NoCheckRuns:
    key = "ela"
    needs_face = False

    def run(self, capture, artifacts):
        raise InputError("image too small for this check")


def test_forensics_exits_2_when_no_check_could_run(tmp_path, capsys, monkeypatch):
    from kiosk.cli import main
    from kiosk.runtime.forensics.suite import ForensicSuite

    monkeypatch.setattr(
        ForensicSuite,
        "from_config",
        classmethod(lambda cls, config, registry=None: cls([_NoCheckRuns()])),
    )
    path = _save(tmp_path / "tiny.png", Image.new("RGB", (8, 8)), "PNG")
    assert main(["forensics", "--json", str(path)]) == 2
    record = json.loads(capsys.readouterr().out)
    assert record["error"] is None and "error" in record["ela"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["forensics", str(empty)]) == 2
    assert "no image found" in capsys.readouterr().err
