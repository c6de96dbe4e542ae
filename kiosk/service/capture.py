"""A capture's path after the state machine says "take the photo": the still in full resolution,
its face box mapped by the camera's geometry, forensics, then the record and the encrypted store.

Plain inputs and outputs (a camera `Still`, a `Verdict`, a forensic suite; state-machine events
back), no threads and no locks: the loop runs `examine` and `StoreSlot.keep` on its capture worker
and feeds the events they return to the state machine.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np

from kiosk.contract.errors import KioskError
from kiosk.runtime.cameras.base import Still
from kiosk.runtime.forensics.capture import Capture
from kiosk.runtime.forensics.jpeg import to_gray
from kiosk.runtime.forensics.suite import ForensicSuite
from kiosk.runtime.pipeline import ACCEPT, Verdict
from kiosk.runtime.token.photo import TokenCutter, TokenPhoto
from kiosk.service.state import Event, StillTaken, Stored, StoreFailed
from kiosk.service.store import CaptureRecord, CaptureStore, StoreError

log = logging.getLogger(__name__)

FORENSICS_NOT_INSTALLED = {"status": "not installed"}


@dataclass(frozen=True)
class HeldStill:
    """The photo under review: the verdict's face box is in the still's pixels."""

    image: np.ndarray
    verdict: Verdict
    frame_index: int
    session_id: str


def examine(
    still: Still,
    verdict: Verdict,
    frame_index: int,
    suite: ForensicSuite,
    work_pixels: int | None = None,
    workers: int = 1,
) -> tuple[HeldStill, Event]:
    """Map the preview verdict onto the still and run forensics on it.

    With `work_pixels` the checks get a copy of at most that many pixels, as `kiosk forensics`
    does ([input] work_megapixels): ELA and SR on a 12 MP still took seconds and ~0.8 GB; the
    JPEG-history check, which is not scale-safe, still reads its patches from the full-resolution
    luma (`Capture.luma`)."""
    box = None
    if verdict.face_box is not None:
        box = still.geometry.to_still(tuple(verdict.face_box))
        verdict = dataclasses.replace(verdict, face_box=[round(v, 1) for v in box])
    held = HeldStill(still.image, verdict, frame_index, uuid.uuid4().hex)
    if not suite.checks:
        return held, StillTaken(dict(FORENSICS_NOT_INSTALLED))
    started = time.monotonic()
    report = suite.run(_work_copy(still.image, box, work_pixels), workers=workers)
    log.info("forensics took %.2f s", time.monotonic() - started)
    return held, StillTaken(report)


def _work_copy(
    image: np.ndarray, box: tuple[float, ...] | None, work_pixels: int | None
) -> Capture:
    height, width = image.shape[:2]
    if not work_pixels or height * width <= work_pixels:
        return Capture(image, box)
    scale = (height * width / work_pixels) ** 0.5  # still px per work px
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_box = None if box is None else tuple(v / scale for v in box)
    return Capture(small, small_box, scale, luma=lambda: to_gray(image))


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes | None:
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return encoded.tobytes() if ok else None


def cut_token(token: TokenCutter | None, held: HeldStill) -> TokenPhoto | None:
    """The passport photo of an accepted still, cut only once the operator accepted it."""
    if token is None or held.verdict.face_box is None:
        return None
    started = time.monotonic()
    try:
        photo = token(held.image, tuple(held.verdict.face_box))
    except (KioskError, ValueError) as exc:
        log.warning("capture kept without a token photo: %s", exc)
        return None
    log.info("token photo took %.2f s", time.monotonic() - started)
    return photo


class StoreSlot:
    """The capture store, or why there is none. A store that cannot open is reported (snapshot,
    /health) and retried on the next Accept, never a crash: under systemd a crash would only loop.
    `refused`: why the last save failed, empty once one succeeds."""

    def __init__(self, opener: Callable[[], CaptureStore]) -> None:
        self._opener = opener
        self.store: CaptureStore | None = None
        self.error = ""
        self.refused = ""

    def open(self) -> bool:
        try:
            store = self._opener()
        except KioskError as exc:
            log.error("capture store unavailable: %s", exc)
            self.store, self.error = None, str(exc)
            return False
        except Exception as exc:  # a store bug must not take the camera and console down with it
            log.exception("capture store unavailable")
            self.store = None
            self.error = f"unexpected {type(exc).__name__} opening the store; see the log"
            return False
        self.store, self.error = store, ""
        return True

    def keep(
        self,
        held: HeldStill,
        forensics: dict[str, Any],
        models: dict[str, str],
        source: str,
        quality: int,
        token: TokenCutter | None = None,
        office: dict[str, Any] | None = None,
    ) -> Event:
        """Encode the still, cut its token photo, write its record; reopens a store that could
        not open before. A still whose token photo cannot be placed is kept without one."""
        if self.store is None and not self.open():
            return StoreFailed(f"capture store unavailable: {self.error}")
        jpeg = encode_jpeg(held.image, quality)
        if jpeg is None:
            return StoreFailed("the photo could not be encoded")
        photo = cut_token(token, held)
        record = CaptureRecord(
            session_id=held.session_id,
            created=datetime.now(UTC).isoformat(),
            decision=ACCEPT,
            verdict=held.verdict.as_record(source, held.frame_index),
            forensics=forensics,
            models=models,
            token=photo.as_record() if photo else {},
            office=office or {},
        )
        try:
            capture_id = self.store.save(
                record, jpeg, photo.jpeg if photo else None, photo.frontal_jpeg if photo else None
            )
        except StoreError as exc:
            log.error("capture not stored: %s", exc)
            self.refused = str(exc)
            return StoreFailed(str(exc))
        self.refused = ""
        log.info("capture %s stored", capture_id)
        return Stored(capture_id)

    @property
    def down(self) -> bool:
        """No photo can be kept: no store, or it refused the last capture."""
        return self.store is None or bool(self.refused)

    def problems(self) -> list[str]:
        if self.store is None:
            problems = [f"capture store unavailable: {self.error}"]
        else:
            problems = list(self.store.recovery.problems())
        if self.refused:
            problems.append(f"the last capture was not stored: {self.refused}")
        return problems

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
