"""Frame sources for `kiosk check` and `kiosk forensics`: `frames()` yields `Frame`s, `close()`
frees devices.

Image files, folders (sorted; unreadable files become error frames, the run goes on), video files
and USB cameras through OpenCV, and the Raspberry Pi camera as `kiosk run` drives it (the
`PicameraCamera` of kiosk.runtime.cameras.picamera, read through `CameraSource`). The spec is
parsed by kiosk.runtime.cameras.spec, as for `kiosk run`. Paths are stat'ed before they are
opened, so a pipe or a device is refused instead of blocking or reading forever. With
`work_pixels`, images and video frames come as a downscaled copy and `Frame.scale` says by how
much (docs/input.md).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from kiosk.contract.errors import ConfigError, InputError
from kiosk.runtime.cameras.base import Camera, CameraUnavailable
from kiosk.runtime.cameras.picamera import PicameraCamera
from kiosk.runtime.cameras.spec import PICAMERA, USB, parse_spec
from kiosk.runtime.imageio import MAX_PIXELS, Limits, file_kind, load_image

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


@dataclass(frozen=True)
class Frame:
    """One frame (RGB uint8) or the reason it could not be read.

    `scale`: original pixels per pixel of `image` (1.0: full resolution). `path`: the image file
    the frame was decoded from (None for video and camera frames).
    """

    source: str
    index: int
    image: np.ndarray | None
    error: str | None = None
    scale: float = 1.0
    path: Path | None = None


class FrameSource(Protocol):
    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


class ImageSource:
    def __init__(self, path: Path, limits: Limits, work_pixels: int | None = None) -> None:
        self.path, self.limits, self.work_pixels = path, limits, work_pixels

    def frames(self) -> Iterator[Frame]:
        name = str(self.path)
        try:
            decoded = load_image(self.path, self.limits, self.work_pixels)
        except InputError as exc:
            yield Frame(name, 0, None, str(exc), path=self.path)
            return
        yield Frame(name, 0, decoded.rgb, scale=decoded.scale, path=self.path)

    def close(self) -> None:
        pass


class FolderSource:
    """Every regular file in the folder (not recursive), in name order; videos are played."""

    def __init__(self, path: Path, limits: Limits, work_pixels: int | None = None) -> None:
        self.path, self.limits, self.work_pixels = path, limits, work_pixels

    def frames(self) -> Iterator[Frame]:
        try:
            children = sorted(
                p for p in self.path.iterdir() if p.is_file() and not p.name.startswith(".")
            )
        except OSError as exc:
            yield Frame(str(self.path), 0, None, f"cannot list folder {self.path}: {exc.strerror}")
            return
        for child in children:
            source = open_path(child, limits=self.limits, work_pixels=self.work_pixels)
            try:
                yield from source.frames()
            finally:
                source.close()

    def close(self) -> None:
        pass


class OpenCVSource:
    """A video file or a USB camera (V4L2) through cv2.VideoCapture.

    A video file that yields no frame, or fewer than its container announces (truncated), ends
    with an error frame: silence would read as "nothing to report".
    """

    def __init__(
        self,
        target: str | int,
        name: str,
        max_frames: int | None = None,
        limits: Limits | None = None,
        work_pixels: int | None = None,
    ) -> None:
        self.target, self.name, self.max_frames = target, name, max_frames
        self.limits, self.work_pixels = limits or Limits(), work_pixels
        self._capture: cv2.VideoCapture | None = None

    def frames(self) -> Iterator[Frame]:
        self._capture = cv2.VideoCapture(self.target)
        if not self._capture.isOpened():
            kind = "camera" if isinstance(self.target, int) else "video file"
            message = f"cannot open {kind} {self.name}"
            if isinstance(self.target, int):
                message += ": is it plugged in and not used by another program?"
            yield Frame(self.name, 0, None, message)
            return
        announced = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        index = 0
        while self.max_frames is None or index < self.max_frames:
            ok, bgr = self._capture.read()
            if not ok or bgr is None:
                if isinstance(self.target, int):
                    yield Frame(
                        self.name, index, None, f"camera {self.name} stopped delivering frames"
                    )
                elif index == 0:
                    yield Frame(self.name, 0, None, f"video file {self.name} has no readable frame")
                elif index < announced:
                    yield Frame(
                        self.name,
                        index,
                        None,
                        f"video file {self.name} ended after {index} of its {announced} frames: "
                        "it is truncated or damaged",
                    )
                break
            yield self._frame(index, bgr)
            index += 1

    def _frame(self, index: int, bgr: np.ndarray) -> Frame:
        height, width = bgr.shape[:2]
        if width * height > self.limits.max_pixels:
            message = (
                f"frame of {width}x{height} is over the {self.limits.max_pixels / 1e6:.1f} MP limit"
            )
            return Frame(self.name, index, None, message)
        scale = 1.0
        if self.work_pixels and width * height > self.work_pixels:
            scale = (width * height / self.work_pixels) ** 0.5
            size = (max(1, int(width / scale)), max(1, int(height / scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            scale = width / size[0]
        return Frame(self.name, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), scale=scale)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class CameraSource:
    """A live camera (kiosk.runtime.cameras.base.Camera) read as frames: its preview stream,
    ending with an error frame when it cannot open or stops."""

    def __init__(self, camera: Camera, max_frames: int | None = None) -> None:
        self.camera, self.max_frames = camera, max_frames

    def frames(self) -> Iterator[Frame]:
        name = self.camera.name
        try:
            self.camera.open()
        except CameraUnavailable as exc:
            yield Frame(name, 0, None, str(exc))
            return
        index = 0
        while self.max_frames is None or index < self.max_frames:
            try:
                image = self.camera.preview()
            except CameraUnavailable as exc:
                yield Frame(name, index, None, str(exc))
                return
            yield Frame(name, index, image)
            index += 1

    def close(self) -> None:
        self.camera.close()


class _MissingSource:
    def __init__(self, name: str, message: str) -> None:
        self.name, self.message = name, message

    def frames(self) -> Iterator[Frame]:
        yield Frame(self.name, 0, None, self.message)

    def close(self) -> None:
        pass


def open_path(
    path: Path,
    max_pixels: int = MAX_PIXELS,
    *,
    limits: Limits | None = None,
    work_pixels: int | None = None,
) -> FrameSource:
    """A folder, video or image file. Never opens what is not a regular file or a folder.

    `limits` defaults to every format up to `max_pixels` at full resolution (Limits.full).
    """
    limits = limits or Limits.full(max_pixels)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return _MissingSource(str(path), f"{path} does not exist")
    except OSError as exc:
        return _MissingSource(str(path), f"cannot read {path}: {exc.strerror}")
    if stat.S_ISDIR(mode):
        return FolderSource(path, limits, work_pixels)
    if not stat.S_ISREG(mode):
        return _MissingSource(str(path), f"{path} is {file_kind(mode)}, not an image or video file")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return OpenCVSource(str(path), str(path), limits=limits, work_pixels=work_pixels)
    return ImageSource(path, limits, work_pixels)


def open_source(
    spec: str,
    max_pixels: int = MAX_PIXELS,
    max_frames: int | None = None,
    *,
    limits: Limits | None = None,
    work_pixels: int | None = None,
    preview_width: int = 640,
) -> FrameSource:
    """`camera` / `camera:N` (USB), `picamera` (Raspberry Pi), or a file or folder path.

    The Raspberry Pi camera is the one `kiosk run` uses (`preview_width`: its lores stream).
    Never raises: a source that cannot be opened yields one error frame saying why.
    """
    try:
        parsed = parse_spec(spec)
    except ConfigError as exc:
        return _MissingSource(spec, str(exc))
    if parsed.kind == PICAMERA:
        return CameraSource(PicameraCamera(preview_width), max_frames)
    if parsed.kind == USB:
        return OpenCVSource(
            parsed.index, spec, max_frames=max_frames, limits=limits, work_pixels=work_pixels
        )
    return open_path(parsed.path, max_pixels, limits=limits, work_pixels=work_pixels)
