"""The one parser of a camera spec (`[service] source`, `kiosk check PATH`, `kiosk run --source`).

`picamera` is the Raspberry Pi camera, `camera` / `camera:N` a USB camera (V4L2 index N), anything
else a file or folder to read or replay. Imports nothing heavy, so configuration checks can share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiosk.contract.errors import ConfigError

PICAMERA, USB, PATH = "picamera", "usb", "path"


@dataclass(frozen=True)
class CameraSpec:
    text: str
    kind: Literal["picamera", "usb", "path"]
    index: int = 0  # the USB camera's index

    @property
    def path(self) -> Path:
        return Path(self.text)


def parse_spec(text: str) -> CameraSpec:
    """Raises ConfigError for `camera:x` (an index that is not a number)."""
    if text == PICAMERA:
        return CameraSpec(text, PICAMERA)
    if text == "camera" or text.startswith("camera:"):
        index_text = text.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise ConfigError(f"camera index in {text!r} must be a number, e.g. camera:0")
        return CameraSpec(text, USB, int(index_text))
    return CameraSpec(text, PATH)
