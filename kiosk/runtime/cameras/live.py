"""Cameras for the service: `preview()` low-resolution frames for the checks, `capture_still()`
the full-resolution photo — the Picamera2 lores/main pattern.

On a Raspberry Pi both streams come from the sensor at once. For OpenCV cameras and replayed
files the still is the current full frame and the preview its downscale to `preview_width`.
Every failure is a `CameraUnavailable`; the service loop retries with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from kiosk.contract.errors import ConfigError, KioskError
from kiosk.runtime.cameras.sources import FrameSource, OpenCVSource, open_path
from kiosk.runtime.imageio import MAX_PIXELS

log = logging.getLogger(__name__)


class CameraUnavailable(KioskError):
    """The camera cannot be opened or stopped delivering frames (or a replay ended)."""


class Camera(Protocol):
    def open(self) -> None: ...

    def preview(self) -> np.ndarray: ...

    def capture_still(self) -> np.ndarray: ...

    def close(self) -> None: ...


def downscale(rgb: np.ndarray, width: int) -> np.ndarray:
    """The frame at `width` pixels wide (aspect kept); frames already that narrow are returned."""
    h, w = rgb.shape[:2]
    if w <= width:
        return rgb
    return cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


class FrameCamera:
    """A camera over a stream of full frames (OpenCV device, video or folder replay)."""

    def __init__(
        self,
        frames: Callable[[], Generator[np.ndarray, None, None]],
        preview_width: int,
        fps: float | None = None,
        loop: bool = False,
        name: str = "camera",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._frames, self.preview_width, self.fps, self.loop = frames, preview_width, fps, loop
        self.name, self._clock, self._sleep = name, clock, sleep
        self._iterator: Generator[np.ndarray, None, None] | None = None
        self._current: np.ndarray | None = None
        self._next_due = 0.0

    def open(self) -> None:
        self._iterator = self._frames()
        self._next_due = self._clock()

    def preview(self) -> np.ndarray:
        if self._iterator is None:
            raise CameraUnavailable(f"{self.name} is not open")
        if (
            self.fps
        ):  # replay pacing: a file plays at the configured rate, not as fast as it decodes
            delay = self._next_due - self._clock()
            if delay > 0:
                self._sleep(delay)
            self._next_due = max(self._next_due + 1 / self.fps, self._clock() - 1 / self.fps)
        frame = next(self._iterator, None)
        if frame is None and self.loop:
            self._iterator = self._frames()
            frame = next(self._iterator, None)
        if frame is None:
            self._iterator = None
            raise CameraUnavailable(
                f"{self.name} has no frames" if self.loop else f"{self.name} ended"
            )
        self._current = frame
        return downscale(frame, self.preview_width)

    def capture_still(self) -> np.ndarray:
        if self._current is None:
            raise CameraUnavailable(f"{self.name} has not delivered a frame yet")
        return self._current.copy()

    def close(self) -> None:
        if self._iterator is not None:
            self._iterator.close()  # runs the source's `finally`: the device is released now
            self._iterator = None


def _frames_of(
    source_factory: Callable[[], FrameSource], skip_unreadable: bool = False
) -> Generator[np.ndarray, None, None]:
    """Images of a kiosk.runtime.cameras.sources source; an error frame ends the stream with its message.

    A replayed folder skips files it cannot decode instead (a README beside the photos must not
    read as an unplugged camera); a pass with no image at all still ends the stream.
    """
    source = source_factory()
    try:
        for frame in source.frames():
            if frame.image is None:
                message = frame.error or f"{frame.source}: unreadable frame"
                if not skip_unreadable:
                    raise CameraUnavailable(message)
                log.warning("replay skips %s", message)
                continue
            yield frame.image
    finally:
        source.close()


class PicameraCamera:
    """Raspberry Pi camera: lores (preview) and main (still) streams of one configuration."""

    def __init__(self, preview_width: int) -> None:
        self.preview_size = (preview_width, preview_width * 3 // 4)
        self._camera = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # Raspberry Pi OS only (apt install python3-picamera2)
        except ImportError as exc:
            raise CameraUnavailable(
                "picamera2 is not installed: it exists only on Raspberry Pi OS "
                "(apt install python3-picamera2; venv with --system-site-packages)"
            ) from exc
        try:
            self._camera = Picamera2()
            # Still configuration: `main` at the sensor's full resolution; three buffers so the
            # lores stream keeps flowing between stills.
            config = self._camera.create_still_configuration(
                main={"format": "RGB888"},
                lores={"size": self.preview_size, "format": "YUV420"},
                buffer_count=3,
            )
            self._camera.configure(config)
            self._camera.start()
        except (RuntimeError, IndexError) as exc:
            self.close()
            raise CameraUnavailable(f"cannot start the Raspberry Pi camera: {exc}") from exc

    def preview(self) -> np.ndarray:
        if self._camera is None:
            raise CameraUnavailable("the Raspberry Pi camera is not open")
        try:
            yuv = self._camera.capture_array("lores")
        except RuntimeError as exc:
            raise CameraUnavailable(f"the Raspberry Pi camera stopped: {exc}") from exc
        return cv2.cvtColor(yuv, cv2.COLOR_YUV420p2RGB)

    def capture_still(self) -> np.ndarray:
        if self._camera is None:
            raise CameraUnavailable("the Raspberry Pi camera is not open")
        try:
            # "RGB888" is BGR in memory (libcamera's naming); the kiosk works in RGB.
            return cv2.cvtColor(self._camera.capture_array("main"), cv2.COLOR_BGR2RGB)
        except RuntimeError as exc:
            raise CameraUnavailable(f"the Raspberry Pi camera stopped: {exc}") from exc

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
                self._camera.close()
            finally:
                self._camera = None


def make_camera(
    spec: str,
    preview_width: int,
    replay_fps: float,
    replay_loop: bool,
    max_pixels: int = MAX_PIXELS,
) -> Camera:
    """`picamera`, `camera` / `camera:N` (USB through OpenCV), or a folder, image or video to replay.

    Raises ConfigError for a malformed camera spec.
    """
    if spec == "picamera":
        return PicameraCamera(preview_width)
    if spec == "camera" or spec.startswith("camera:"):
        index_text = spec.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise ConfigError(
                f"service.source: camera index in {spec!r} must be a number, e.g. camera:0"
            )
        index = int(index_text)
        return FrameCamera(
            lambda: _frames_of(lambda: OpenCVSource(index, spec)), preview_width, name=spec
        )
    path = Path(spec)  # a missing path is retried like an unplugged camera
    return FrameCamera(
        lambda: _frames_of(lambda: open_path(path, max_pixels), skip_unreadable=path.is_dir()),
        preview_width,
        fps=replay_fps,
        loop=replay_loop,
        name=f"replay {path.name}",
    )
