"""What a forensic check reads and where it may write: the capture, the artifact folder, and the
check's protocol. A leaf of the forensics package, so the checks and the suite that runs them
both import it (the suite imports the checks, never the other way round).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kiosk.runtime.imageio import Luma
from kiosk.runtime.vision.types import Box


@dataclass(frozen=True)
class Capture:
    """A still. `face` is the detector box (in `rgb`'s pixels) when exactly one face was found.

    `rgb` may be a downscaled copy of the capture (`scale` original px per px, docs/input.md);
    `luma` then loads the full-resolution luma in the file's stored orientation, for the checks
    that are not scale-safe (JPEG history): a loader, so that 50 MP plane lives only while the
    check that needs it runs. None when `rgb` is the capture itself.
    """

    rgb: np.ndarray  # (H, W, 3) uint8
    face: Box | None = None
    scale: float = 1.0
    luma: Callable[[], Luma] | None = None


@dataclass(frozen=True)
class Artifacts:
    """Where a check may write images for people (heat maps, upscaled faces); None: nowhere."""

    out_dir: Path | None = None
    stem: str = "capture"

    def path(self, suffix: str) -> Path | None:
        return None if self.out_dir is None else self.out_dir / f"{self.stem}_{suffix}"


class ForensicCheck(Protocol):
    key: str
    needs_face: bool

    def run(self, capture: Capture, artifacts: Artifacts) -> dict[str, Any]: ...
