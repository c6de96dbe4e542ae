"""The camera interface every source implements for `kiosk run` (and `kiosk check picamera`).

`preview()` returns the low-resolution frame the checks run on, `capture_still()` the
full-resolution photo together with the geometry that maps preview pixels onto it, computed from
the camera's configured stream sizes, so no caller rescales boxes by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from kiosk.contract.errors import KioskError

Box = tuple[float, float, float, float]


class CameraUnavailable(KioskError):
    """The camera cannot be opened or stopped delivering frames (or a replay ended)."""


@dataclass(frozen=True)
class StreamGeometry:
    """(width, height) of the preview stream and of the still.

    Boxes map per axis: a lores stream whose size the driver aligned may be squeezed by a pixel.
    """

    preview: tuple[int, int]
    still: tuple[int, int]

    @property
    def scale(self) -> float:
        """Still pixels per preview pixel (horizontally): what resolution is judged against."""
        return self.still[0] / self.preview[0]

    def to_still(self, box: Box) -> Box:
        sx, sy = self.still[0] / self.preview[0], self.still[1] / self.preview[1]
        x0, y0, x1, y1 = box
        return x0 * sx, y0 * sy, x1 * sx, y1 * sy


@dataclass(frozen=True)
class Still:
    image: np.ndarray  # RGB uint8, full resolution
    geometry: StreamGeometry


class Camera(Protocol):
    name: str
    geometry: StreamGeometry | None  # of the last preview, None before the first

    def open(self) -> None: ...

    def preview(self) -> np.ndarray: ...

    def capture_still(self) -> Still: ...

    def close(self) -> None: ...


def preview_size(still: tuple[int, int], width: int, even: bool = False) -> tuple[int, int]:
    """The preview's (width, height) for a still of `still` size: `width` wide, aspect kept;
    a still already that narrow is its own preview. `even`: both rounded down to even numbers
    (YUV420 needs them)."""
    w, h = still
    if w > width:
        w, h = width, max(1, round(h * width / w))
    if even:
        w, h = max(2, w - w % 2), max(2, h - h % 2)
    return w, h


def downscale(rgb: np.ndarray, width: int) -> np.ndarray:
    """The frame at `width` pixels wide (aspect kept); frames already that narrow are returned."""
    size = preview_size((rgb.shape[1], rgb.shape[0]), width)
    if size[0] == rgb.shape[1]:
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
