"""Frame sources behind one small interface: `frames()` yields `Frame`s, `close()` frees devices.

Image files, folders (sorted; unreadable files become error frames, the run goes on), video files
and USB cameras through OpenCV, and the Raspberry Pi camera through Picamera2 (imported only when
used; it exists only on Raspberry Pi OS).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from kiosk.errors import InputError
from kiosk.imageio import MAX_PIXELS, load_rgb

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


@dataclass(frozen=True)
class Frame:
    """One frame (RGB uint8) or the reason it could not be read."""

    source: str
    index: int
    image: np.ndarray | None
    error: str | None = None


class FrameSource(Protocol):
    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


class ImageSource:
    def __init__(self, path: Path, max_pixels: int = MAX_PIXELS) -> None:
        self.path, self.max_pixels = path, max_pixels

    def frames(self) -> Iterator[Frame]:
        try:
            yield Frame(str(self.path), 0, load_rgb(self.path, self.max_pixels))
        except InputError as exc:
            yield Frame(str(self.path), 0, None, str(exc))

    def close(self) -> None:
        pass


class FolderSource:
    """Every regular file in the folder (not recursive), in name order; videos are played."""

    def __init__(self, path: Path, max_pixels: int = MAX_PIXELS) -> None:
        self.path, self.max_pixels = path, max_pixels

    def frames(self) -> Iterator[Frame]:
        for child in sorted(
            p for p in self.path.iterdir() if p.is_file() and not p.name.startswith(".")
        ):
            source = open_path(child, self.max_pixels)
            try:
                yield from source.frames()
            finally:
                source.close()

    def close(self) -> None:
        pass


class OpenCVSource:
    """A video file or a USB camera (V4L2) through cv2.VideoCapture."""

    def __init__(self, target: str | int, name: str, max_frames: int | None = None) -> None:
        self.target, self.name, self.max_frames = target, name, max_frames
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
        index = 0
        while self.max_frames is None or index < self.max_frames:
            ok, bgr = self._capture.read()
            if not ok or bgr is None:
                if isinstance(self.target, int):
                    yield Frame(
                        self.name, index, None, f"camera {self.name} stopped delivering frames"
                    )
                break
            yield Frame(self.name, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class PicameraSource:
    """Raspberry Pi camera: a small `lores` stream for checks beside the full-resolution `main`."""

    def __init__(self, size: tuple[int, int] = (640, 480), max_frames: int | None = None) -> None:
        self.size, self.max_frames = size, max_frames
        self._camera = None

    def frames(self) -> Iterator[Frame]:
        try:
            from picamera2 import Picamera2  # Raspberry Pi OS only (apt install python3-picamera2)
        except ImportError:
            yield Frame(
                "picamera",
                0,
                None,
                "picamera2 is not installed: it exists only on Raspberry Pi OS "
                "(apt install python3-picamera2; venv with --system-site-packages)",
            )
            return
        try:
            self._camera = Picamera2()
            config = self._camera.create_preview_configuration(
                main={"format": "RGB888"}, lores={"size": self.size, "format": "YUV420"}
            )
            self._camera.configure(config)
            self._camera.start()
        except (RuntimeError, IndexError) as exc:
            yield Frame("picamera", 0, None, f"cannot start the Raspberry Pi camera: {exc}")
            return
        index = 0
        while self.max_frames is None or index < self.max_frames:
            yuv = self._camera.capture_array("lores")
            rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV420p2RGB)
            yield Frame("picamera", index, rgb)
            index += 1

    def close(self) -> None:
        if self._camera is not None:
            self._camera.stop()
            self._camera.close()
            self._camera = None


class _MissingSource:
    def __init__(self, name: str, message: str) -> None:
        self.name, self.message = name, message

    def frames(self) -> Iterator[Frame]:
        yield Frame(self.name, 0, None, self.message)

    def close(self) -> None:
        pass


def open_path(path: Path, max_pixels: int = MAX_PIXELS) -> FrameSource:
    if path.is_dir():
        return FolderSource(path, max_pixels)
    if not path.exists():
        return _MissingSource(str(path), f"{path} does not exist")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return OpenCVSource(str(path), str(path))
    return ImageSource(path, max_pixels)


def open_source(
    spec: str, max_pixels: int = MAX_PIXELS, max_frames: int | None = None
) -> FrameSource:
    """`camera` / `camera:N` (USB), `picamera` (Raspberry Pi), or a file or folder path.

    Never raises: a source that cannot be opened yields one error frame saying why.
    """
    if spec == "picamera":
        return PicameraSource(max_frames=max_frames)
    if spec == "camera" or spec.startswith("camera:"):
        index_text = spec.partition(":")[2] or "0"
        if not index_text.isdigit():
            return _MissingSource(spec, f"camera index in {spec!r} must be a number, e.g. camera:0")
        return OpenCVSource(int(index_text), spec, max_frames=max_frames)
    return open_path(Path(spec), max_pixels)
