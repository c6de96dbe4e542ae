"""The Raspberry Pi camera through Picamera2: one configuration for `kiosk check picamera` and
`kiosk run`.

One still configuration (Picamera2's lores/main pattern): `main` at the sensor's full resolution
(RGB888) for the photo, and a small YUV420 `lores` stream for the checks, `preview_width` wide
with main's aspect ratio; three buffers so lores keeps flowing between stills. The stream sizes
and the lores stride are read back from the configuration the camera accepted: libcamera may
align the sizes, and it pads every row of every YUV420 plane to the stride, so the lores array is
(height * 3/2, stride) and its padding must be cropped before the colour conversion.

picamera2 is imported only when a camera opens: it exists only on Raspberry Pi OS.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from kiosk.runtime.cameras.base import CameraUnavailable, Still, StreamGeometry, preview_size

log = logging.getLogger(__name__)

PICAMERA2_MISSING = (
    "picamera2 is not installed: it exists only on Raspberry Pi OS "
    "(apt install python3-picamera2; venv with --system-site-packages)"
)


def yuv420_to_rgb(buffer: np.ndarray, size: tuple[int, int], stride: int) -> np.ndarray:
    """RGB of a planar YUV420 (I420) buffer whose luma rows are `stride` bytes and chroma rows
    `stride / 2`, the padding cropped. Raises ValueError for a buffer too small for `size`."""
    width, height = size
    half_w, half_h, half_stride = width // 2, height // 2, stride // 2
    luma, chroma = stride * height, half_stride * half_h
    flat = np.ascontiguousarray(buffer, dtype=np.uint8).reshape(-1)
    if stride < width or flat.size < luma + 2 * chroma:
        raise ValueError(
            f"YUV420 buffer of {flat.size} bytes with stride {stride} is too small for "
            f"{width}x{height}"
        )
    y = flat[:luma].reshape(height, stride)[:, :width]
    u = flat[luma : luma + chroma].reshape(half_h, half_stride)[:, :half_w]
    v = flat[luma + chroma : luma + 2 * chroma].reshape(half_h, half_stride)[:, :half_w]
    i420 = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)])
    return cv2.cvtColor(i420.reshape(height * 3 // 2, width), cv2.COLOR_YUV2RGB_I420)


class PicameraCamera:
    """`preview()` from the lores stream, `capture_still()` from main; see the module doc."""

    def __init__(self, preview_width: int, name: str = "picamera") -> None:
        self.preview_width, self.name = preview_width, name
        self.geometry: StreamGeometry | None = None  # known once open
        self._stride = 0
        self._camera: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # Raspberry Pi OS only (apt install python3-picamera2)
        except ImportError as exc:
            raise CameraUnavailable(PICAMERA2_MISSING) from exc
        try:
            self._camera = Picamera2()
            config = self._camera.create_still_configuration(
                main={"format": "RGB888"}, lores={"format": "YUV420"}, buffer_count=3
            )
            main_size = tuple(config["main"]["size"])
            config["lores"]["size"] = preview_size(main_size, self.preview_width, even=True)
            self._camera.configure(config)
            streams = self._camera.camera_configuration()
            self._camera.start()
        except (RuntimeError, IndexError, ValueError) as exc:  # no camera; a refused config
            self.close()
            raise CameraUnavailable(f"cannot start the Raspberry Pi camera: {exc}") from exc
        lores, main = streams["lores"], streams["main"]
        self.geometry = StreamGeometry(tuple(lores["size"]), tuple(main["size"]))
        self._stride = int(lores.get("stride") or lores["size"][0])
        log.info(
            "Raspberry Pi camera: lores %dx%d (stride %d), main %dx%d",
            *self.geometry.preview,
            self._stride,
            *self.geometry.still,
        )

    def preview(self) -> np.ndarray:
        if self._camera is None or self.geometry is None:
            raise CameraUnavailable("the Raspberry Pi camera is not open")
        try:
            yuv = self._camera.capture_array("lores")
        except RuntimeError as exc:
            raise CameraUnavailable(f"the Raspberry Pi camera stopped: {exc}") from exc
        return yuv420_to_rgb(yuv, self.geometry.preview, self._stride)

    def capture_still(self) -> Still:
        if self._camera is None or self.geometry is None:
            raise CameraUnavailable("the Raspberry Pi camera is not open")
        try:
            main = self._camera.capture_array("main")
        except RuntimeError as exc:
            raise CameraUnavailable(f"the Raspberry Pi camera stopped: {exc}") from exc
        # "RGB888" is BGR in memory (libcamera's naming); the kiosk works in RGB.
        return Still(cv2.cvtColor(main, cv2.COLOR_BGR2RGB), self.geometry)

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
                self._camera.close()
            finally:
                self._camera = None
