"""The one camera interface: spec parsing, preview->still geometry, and the Raspberry Pi camera
with a fake `picamera2` module (padded lores rows included); the real camera only on a Pi."""

from __future__ import annotations

import copy
import sys
import types
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from kiosk.contract.errors import ConfigError
from kiosk.contract.reasons import NO_FACE
from kiosk.runtime.cameras.base import CameraUnavailable, StreamGeometry, preview_size
from kiosk.runtime.cameras.live import FrameCamera, make_camera
from kiosk.runtime.cameras.picamera import PicameraCamera, yuv420_to_rgb
from kiosk.runtime.cameras.sources import open_source
from kiosk.runtime.cameras.spec import PATH, PICAMERA, USB, parse_spec
from kiosk.runtime.pipeline import ACCEPT, Verdict
from kiosk.runtime.vision.analysis import Analysis
from kiosk.runtime.vision.types import Face
from kiosk.service.state import Accept
from tests.test_service_loop import fake_checks, make_config, started, state_is, wait_for

__all__ = ["started"]  # the fixture that starts (and stops) services

SENSOR = (640, 480)
STRIDE_ALIGN = 64  # lores rows padded to this many bytes, as libcamera does on a Pi


def scene(size: tuple[int, int] = SENSOR) -> np.ndarray:
    """A smooth RGB test card whose colours vary on both axes (a crop or shift shows)."""
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    return (np.dstack([x, y, 1 - (x + y) / 2]) * 200 + 20).astype(np.uint8)


def padded_yuv420(rgb: np.ndarray, stride: int) -> np.ndarray:
    """What picamera2's capture_array("lores") returns: I420 planes, each row padded to the
    stride (chroma rows to stride/2) with junk, shaped (height * 3/2, stride)."""
    h, w = rgb.shape[:2]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    y, u, v = i420[: w * h], i420[w * h : w * h * 5 // 4], i420[w * h * 5 // 4 :]

    def pad(plane: np.ndarray, rows: int, width: int, row_bytes: int) -> np.ndarray:
        out = np.full((rows, row_bytes), 255, np.uint8)
        out[:, :width] = plane.reshape(rows, width)
        return out.reshape(-1)

    flat = np.concatenate(
        [
            pad(y, h, w, stride),
            pad(u, h // 2, w // 2, stride // 2),
            pad(v, h // 2, w // 2, stride // 2),
        ]
    )
    return flat.reshape(h * 3 // 2, stride)


class FakePicamera2:
    """The parts of picamera2.Picamera2 the kiosk uses; `configured` keeps every configuration."""

    configured: ClassVar[list[dict[str, Any]]] = []
    fail: ClassVar[str | None] = None  # "open" or "capture"

    def __init__(self) -> None:
        if FakePicamera2.fail == "open":
            raise RuntimeError("no cameras available")
        self.config: dict[str, Any] | None = None
        self.started = self.closed = False

    def create_still_configuration(
        self, main: dict[str, Any], lores: dict[str, Any], buffer_count: int
    ) -> dict[str, Any]:
        return {
            "main": {"size": SENSOR, **main},
            "lores": {"size": SENSOR, **lores},
            "buffer_count": buffer_count,
        }

    def configure(self, config: dict[str, Any]) -> None:
        self.config = copy.deepcopy(config)
        width = config["lores"]["size"][0]
        self.config["lores"]["stride"] = -(-width // STRIDE_ALIGN) * STRIDE_ALIGN
        self.config["main"]["stride"] = config["main"]["size"][0] * 3
        FakePicamera2.configured.append(copy.deepcopy(config))

    def camera_configuration(self) -> dict[str, Any]:
        return copy.deepcopy(self.config)

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str) -> np.ndarray:
        if FakePicamera2.fail == "capture":
            raise RuntimeError("camera frontend has timed out")
        stream = self.config[name]
        image = cv2.resize(scene(), stream["size"], interpolation=cv2.INTER_AREA)
        if name == "lores":
            return padded_yuv420(image, stream["stride"])
        return image[..., ::-1].copy()  # "RGB888" is BGR in memory

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    monkeypatch.setattr(FakePicamera2, "configured", [])
    monkeypatch.setattr(FakePicamera2, "fail", None)
    return FakePicamera2


def test_one_spec_parser():
    assert parse_spec("picamera").kind == PICAMERA
    assert (parse_spec("camera").kind, parse_spec("camera").index) == (USB, 0)
    assert parse_spec("camera:2").index == 2
    assert parse_spec("photos/a.jpg").kind == PATH
    with pytest.raises(ConfigError, match="camera index in 'camera:x' must be a number"):
        parse_spec("camera:x")
    [frame] = open_source("camera:x").frames()  # check: an error record, run: a config error
    assert frame.error == "camera index in 'camera:x' must be a number, e.g. camera:0"
    with pytest.raises(ConfigError, match=r"service\.source: camera index"):
        make_camera("camera:x", 32, 10.0, True)


def test_preview_size_keeps_the_aspect_ratio():
    assert preview_size((4056, 3040), 640) == (640, 480)
    assert preview_size((1920, 1080), 640) == (640, 360)
    assert preview_size((1920, 1080), 500, even=True) == (500, 280)  # 281.25, made even
    assert preview_size((320, 240), 640) == (320, 240)  # never upscaled


def test_geometry_maps_boxes_per_axis():
    squeezed = StreamGeometry(preview=(192, 150), still=(640, 480))  # a driver-aligned lores
    assert squeezed.to_still((96.0, 75.0, 192.0, 150.0)) == pytest.approx((320, 240, 640, 480))


def test_frame_camera_still_carries_its_geometry():
    camera = FrameCamera(lambda: iter([scene((100, 75))]), preview_width=32)
    camera.open()
    assert camera.preview().shape == (24, 32, 3)
    still = camera.capture_still()
    assert still.image.shape == (75, 100, 3)
    assert still.geometry == StreamGeometry((32, 24), (100, 75))


def test_yuv420_padding_is_cropped_before_conversion():
    rgb = scene((200, 150))
    buffer = padded_yuv420(rgb, 256)
    assert buffer.shape == (225, 256)
    out = yuv420_to_rgb(buffer, (200, 150), 256)
    assert out.shape == (150, 200, 3)
    assert np.abs(out.astype(int) - rgb).max() <= 6  # chroma subsampling and rounding only
    unpadded = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)
    assert np.array_equal(out, unpadded)
    # Reading the padded array as if it were unpadded (the old code) scrambles the picture.
    naive = cv2.cvtColor(buffer, cv2.COLOR_YUV420p2RGB)
    assert naive.shape != out.shape or np.abs(naive.astype(int) - rgb).mean() > 20
    with pytest.raises(ValueError, match="too small"):
        yuv420_to_rgb(buffer[:100], (200, 150), 256)


def test_picamera_streams_geometry_and_still(picamera2):
    camera = make_camera("picamera", preview_width=200, replay_fps=10.0, replay_loop=True)
    assert isinstance(camera, PicameraCamera)
    camera.open()
    [config] = picamera2.configured
    assert config["main"] == {"size": SENSOR, "format": "RGB888"}
    assert config["lores"] == {"size": (200, 150), "format": "YUV420"}  # 4:3 like the sensor
    assert config["buffer_count"] == 3
    preview = camera.preview()
    assert preview.shape == (150, 200, 3)
    expected = cv2.resize(scene(), (200, 150), interpolation=cv2.INTER_AREA)
    assert np.abs(preview.astype(int) - expected).max() <= 6
    still = camera.capture_still()
    assert np.array_equal(still.image, scene())  # RGB, full resolution
    assert still.geometry == StreamGeometry((200, 150), SENSOR)
    camera.close()
    camera.close()  # twice is harmless
    with pytest.raises(CameraUnavailable, match="not open"):
        camera.preview()


def test_check_and_run_configure_the_picamera_the_same_way(picamera2):
    frames = list(open_source("picamera", max_frames=2, preview_width=200).frames())
    assert [(f.source, f.index, f.image.shape, f.error) for f in frames] == [
        ("picamera", 0, (150, 200, 3), None),
        ("picamera", 1, (150, 200, 3), None),
    ]
    make_camera("picamera", 200, 10.0, True).open()
    assert picamera2.configured[0] == picamera2.configured[1]


def test_picamera_failures_are_camera_unavailable(picamera2, monkeypatch):
    picamera2.fail = "open"
    camera = PicameraCamera(200)
    with pytest.raises(CameraUnavailable, match="cannot start the Raspberry Pi camera"):
        camera.open()
    [frame] = open_source("picamera", preview_width=200).frames()
    assert "cannot start the Raspberry Pi camera: no cameras available" in frame.error

    picamera2.fail = "capture"
    camera.open()
    with pytest.raises(CameraUnavailable, match="stopped: camera frontend has timed out"):
        camera.preview()
    with pytest.raises(CameraUnavailable, match="stopped"):
        camera.capture_still()

    monkeypatch.setitem(sys.modules, "picamera2", None)  # not Raspberry Pi OS
    with pytest.raises(CameraUnavailable, match="picamera2 is not installed"):
        PicameraCamera(200).open()
    [frame] = open_source("picamera").frames()
    assert frame.error.startswith("picamera2 is not installed")


class AlwaysPassing:
    """A pipeline that passes every frame with a face at FACE_BOX (in preview pixels)."""

    box = (50.0, 30.0, 150.0, 130.0)

    def check(self, rgb: np.ndarray, still_scale: float = 1.0) -> tuple[Verdict, Analysis]:
        if rgb.shape != (150, 200, 3):
            return Verdict("reject", [NO_FACE], 0, None), Analysis([], None, None, None, NO_FACE)
        face = Face(self.box, 0.99, np.zeros((5, 2)))
        return Verdict(ACCEPT, [], 1, list(self.box)), Analysis([face], face, None, None, None)


def test_the_service_maps_the_face_box_with_the_camera_geometry(picamera2, tmp_path, started):
    config = make_config(tmp_path, source="picamera", preview_width=200)
    service = started(config, None, lambda c: fake_checks(AlwaysPassing()))
    wait_for(state_is(service, "review"))
    session, image = service.review_image()
    assert image.shape == (480, 640, 3)
    result = service.request(Accept(), session=session).result(5)
    assert result["state"] == "done"
    [record] = service.store.list()
    assert record["verdict"]["face_box"] == [160.0, 96.0, 480.0, 416.0]  # x3.2 on both axes


@pytest.mark.device
def test_real_picamera_delivers_both_streams():
    """On the kiosk: the lores preview at the configured width and the full-resolution still."""
    camera = PicameraCamera(640)
    camera.open()
    try:
        preview = camera.preview()
        still = camera.capture_still()
    finally:
        camera.close()
    geometry = still.geometry
    assert preview.shape == (geometry.preview[1], geometry.preview[0], 3)
    assert still.image.shape == (geometry.still[1], geometry.still[0], 3)
    ratio = geometry.still[0] / geometry.still[1]
    assert geometry.preview[0] / geometry.preview[1] == pytest.approx(ratio, rel=0.02)
    assert preview.std() > 1.0  # a picture, not a constant buffer
