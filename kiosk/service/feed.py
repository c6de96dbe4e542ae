"""The camera thread: grabs preview frames into a one-slot mailbox and reopens a failing camera.

A newer frame replaces an unread one (the drop is counted), so the checks always run on the
newest frame and never queue up behind a slow model. Any camera failure is retried with
exponential backoff, never fatal. `preview()` and `capture_still()` never overlap.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from kiosk.runtime.cameras.base import Camera, CameraUnavailable, Still

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviewFrame:
    index: int
    grabbed: float  # time.monotonic() when the camera thread got it
    image: np.ndarray
    still_scale: float = 1.0  # still pixels per preview pixel: resolution is judged in the still


class CameraFeed:
    """Runs on its own thread (`run`); the loop `take`s frames, the console `wait_newer`s."""

    def __init__(
        self,
        camera: Camera,
        name: str,
        retry_min_s: float,
        retry_max_s: float,
        stop: threading.Event,
    ) -> None:
        self.camera, self.name = camera, name
        self.retry_min_s, self.retry_max_s, self._stop = retry_min_s, retry_max_s, stop
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._camera_lock = threading.Lock()
        self._frame: PreviewFrame | None = None
        self._taken = -1  # index of the last frame the loop took
        self._ok: bool | None = None  # None: not opened yet
        self._message = "starting"
        self._retry_in = 0.0
        self.counters = {"grabbed": 0, "dropped": 0}

    # ---- the camera thread --------------------------------------------------------------------
    def run(self) -> None:
        backoff, index = self.retry_min_s, 0
        while not self._stop.is_set():
            try:
                with self._camera_lock:
                    self.camera.open()
                while not self._stop.is_set():
                    with self._camera_lock:
                        image = self.camera.preview()
                    index += 1
                    geometry = self.camera.geometry
                    scale = geometry.scale if geometry is not None else 1.0
                    self._deliver(PreviewFrame(index, time.monotonic(), image, scale))
                    backoff = self.retry_min_s
            except Exception as exc:  # any camera failure is retried, never fatal
                if not isinstance(exc, CameraUnavailable):
                    log.exception("camera %s failed", self.name)
                self.close()
                with self._lock:
                    if self._ok or self._message != str(exc):
                        log.warning("camera unavailable (%s); retrying in %.1f s", exc, backoff)
                    self._ok, self._message, self._retry_in = False, str(exc), backoff
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)

    def _deliver(self, frame: PreviewFrame) -> None:
        with self._lock:
            if self._frame is not None and self._frame.index > self._taken:
                self.counters["dropped"] += 1
            self._frame = frame
            self.counters["grabbed"] += 1
            if not self._ok:
                log.info("camera %s delivers frames", self.name)
            self._ok, self._message, self._retry_in = True, "", 0.0
            self._ready.notify_all()

    # ---- any other thread ---------------------------------------------------------------------
    def take(self, timeout: float) -> PreviewFrame | None:
        """The newest frame not taken yet, waiting up to `timeout` for one (the loop's call)."""
        with self._lock:
            if self._frame is None or self._frame.index <= self._taken:
                self._ready.wait(timeout)
            frame = self._frame
            if frame is None or frame.index <= self._taken:
                return None
            self._taken = frame.index
            return frame

    def wait_newer(self, after: int, timeout: float) -> PreviewFrame | None:
        """The newest frame with an index above `after`, waiting up to `timeout` (viewers)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._frame is None or self._frame.index <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._ready.wait(remaining)
            return self._frame

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "ok": bool(self._ok),
                "message": self._message,
                "retry_in_s": round(self._retry_in, 2),
            }

    def condition(self) -> tuple[bool | None, str]:
        """(delivering, why not): None while the camera has not been opened yet."""
        with self._lock:
            return self._ok, self._message

    def capture_still(self) -> Still:
        with self._camera_lock:
            return self.camera.capture_still()

    def wake(self) -> None:
        """Wake every waiter (at stop)."""
        with self._lock:
            self._ready.notify_all()

    def close(self) -> None:
        with self._camera_lock:
            self.camera.close()
