"""Cameras for `kiosk run`: every `[service] source` behind the one `Camera` interface
(kiosk.runtime.cameras.base): `preview()` for the checks, `capture_still()` for the photo.

On a Raspberry Pi both streams come from the sensor at once (kiosk.runtime.cameras.picamera).
For OpenCV cameras and replayed files the still is the current full frame and the preview its
downscale to `preview_width`, aspect kept. Every failure is a `CameraUnavailable`; the service
retries with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator

import numpy as np

from kiosk.contract.errors import ConfigError
from kiosk.runtime.cameras.base import (
    Camera,
    CameraUnavailable,
    Still,
    StreamGeometry,
    downscale,
    preview_size,
)
from kiosk.runtime.cameras.picamera import PicameraCamera
from kiosk.runtime.cameras.sources import FrameSource, OpenCVSource, open_path
from kiosk.runtime.cameras.spec import PICAMERA, USB, parse_spec
from kiosk.runtime.imageio import MAX_PIXELS

log = logging.getLogger(__name__)


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

    @property
    def geometry(self) -> StreamGeometry | None:
        """The still is the whole current frame; the preview, that frame downscaled."""
        if self._current is None:
            return None
        size = (self._current.shape[1], self._current.shape[0])
        return StreamGeometry(preview_size(size, self.preview_width), size)

    def capture_still(self) -> Still:
        geometry = self.geometry
        if self._current is None or geometry is None:
            raise CameraUnavailable(f"{self.name} has not delivered a frame yet")
        return Still(self._current.copy(), geometry)

    def close(self) -> None:
        if self._iterator is not None:
            self._iterator.close()  # runs the source's `finally`: the device is released now
            self._iterator = None


def _frames_of(
    source_factory: Callable[[], FrameSource], skip_unreadable: bool = False
) -> Generator[np.ndarray, None, None]:
    """Images of a frame source; an error frame ends the stream with its message.

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
    try:
        parsed = parse_spec(spec)
    except ConfigError as exc:
        raise ConfigError(f"service.source: {exc}") from None
    if parsed.kind == PICAMERA:
        return PicameraCamera(preview_width)
    if parsed.kind == USB:
        return FrameCamera(
            lambda: _frames_of(lambda: OpenCVSource(parsed.index, spec)), preview_width, name=spec
        )
    path = parsed.path  # a missing path is retried like an unplugged camera
    return FrameCamera(
        lambda: _frames_of(lambda: open_path(path, max_pixels), skip_unreadable=path.is_dir()),
        preview_width,
        fps=replay_fps,
        loop=replay_loop,
        name=f"replay {path.name}",
    )
