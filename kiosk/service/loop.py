"""The service loop around the pure `SessionMachine`: it only schedules.

Two threads. The camera thread (`CameraFeed`, kiosk.service.feed) grabs preview frames into a
one-slot mailbox and reopens a failing camera with backoff. The loop thread takes the newest
frame, runs the compliance pipeline on it, feeds the verdict to the state machine and hands the
actions it returns to the capture unit (kiosk.service.capture: still, geometry, forensics,
record, store). Operator commands and reloads reach the loop through a queue, so the machine and
the pipeline are only ever touched by the loop thread. /health is judged by kiosk.service.health
from plain facts the loop gathers.

Models are loaded once, at start: a `reload()` that fails (missing or altered file in a new bundle)
keeps the bundle already in use. The loop itself pings the systemd watchdog, so a loop stuck in a
model call stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.config import Config
from kiosk.contract.errors import KioskError
from kiosk.runtime.cameras.base import Camera, CameraUnavailable
from kiosk.runtime.cameras.live import make_camera
from kiosk.runtime.pipeline import Verdict
from kiosk.service.bundle import Checks, load_checks
from kiosk.service.capture import HeldStill, StoreSlot, examine
from kiosk.service.feed import CameraFeed, PreviewFrame
from kiosk.service.health import FAILING_FRAMES, HealthFacts, assess
from kiosk.service.notify import Notifier
from kiosk.service.overlay import Overlay, overlay_of
from kiosk.service.state import (
    CAMERA_UNAVAILABLE,
    CAPTURE,
    CHECKING,
    CHECKS_UNAVAILABLE,
    DISCARD_STILL,
    DONE,
    HOLDS_STILL,
    IDLE,
    PRESENT,
    READY,
    REVIEW,
    STORE_CAPTURE,
    TAKE_STILL,
    Accept,
    CameraBack,
    CameraLost,
    ChecksDown,
    ChecksUp,
    Event,
    FrameChecked,
    Retake,
    SessionMachine,
    Settings,
    State,
    StillFailed,
    StoreFailed,
)
from kiosk.service.store import CaptureStore

log = logging.getLogger(__name__)

LIVE = {IDLE, PRESENT, CHECKING, READY, DONE}
__all__ = ["FAILING_FRAMES", "Checks", "KioskService", "load_checks"]


@dataclass(frozen=True)
class _Command:
    event: Event | None  # None: reload the models
    session: int | None
    future: Future[dict[str, Any]]


class KioskService:
    """Owns the units (feed, checks, store slot) and the state machine; see the module doc."""

    def __init__(
        self,
        config: Config,
        camera: Camera | None = None,
        checks_loader: Callable[[Config], Checks] = load_checks,
        store_opener: Callable[[Config], CaptureStore] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        s = config.service
        self.config = config
        self.camera_name = s.source
        camera = camera or make_camera(
            s.source,
            s.preview_width,
            s.replay_fps,
            s.replay_loop,
            int(config.input.max_megapixels * 1e6),
        )
        self._stop = threading.Event()
        self.feed = CameraFeed(camera, s.source, s.retry_min_s, s.retry_max_s, self._stop)
        opener = store_opener or open_store
        self.storage = StoreSlot(lambda: opener(config))
        self._checks_loader = checks_loader
        self.notifier = notifier or Notifier()
        self.machine = SessionMachine(Settings(s.smoothing_frames, s.ready_frames))
        self.checks: Checks | None = None
        self.checks_error = ""
        self.reload_error = ""

        self._lock = threading.Lock()  # guards what the console reads
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._overlay: Overlay | None = None
        self._verdict: dict[str, Any] | None = None
        self._held: HeldStill | None = None
        self._last_verdict: tuple[Verdict, int] | None = None  # goes with the next still
        self._failing_frames = 0  # consecutive frames the pipeline could not check
        self._heartbeat = time.monotonic()
        self._last_ping = 0.0
        self._times: deque[float] = deque(maxlen=30)
        self.counters = {"checked": 0, "frame_errors": 0}

    @property
    def store(self) -> CaptureStore | None:
        return self.storage.store

    @property
    def store_error(self) -> str:
        return self.storage.error

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # ---- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Load models and the store once, then start the camera and loop threads."""
        self._load_checks(initial=True)
        self.storage.open()
        for target, name in ((self.feed.run, "kiosk-camera"), (self._loop, "kiosk-loop")):
            if name == "kiosk-loop":  # READY=1 precedes the loop's first WATCHDOG=1
                self.notifier.ready(self._status_line())
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.notifier.stopping()
        self._stop.set()
        self.feed.wake()
        for thread in self._threads:
            thread.join(timeout=5)
        self.feed.close()
        self.storage.close()
        self.notifier.close()

    # ---- requests from the console and signals (any thread) -------------------------------------
    def request(self, event: Event | None, session: int | None = None) -> Future[dict[str, Any]]:
        """Queue an operator event (Accept/Retake) or, with None, a model reload; the future
        resolves to `{"accepted": bool, "state": ..., ...}` once the loop has handled it."""
        future: Future[dict[str, Any]] = Future()
        self._commands.put(_Command(event, session, future))
        return future

    def reload(self) -> Future[dict[str, Any]]:
        return self.request(None)

    # ---- what the console shows ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        camera, grabbed = self.feed.status(), self.feed.counters
        with self._lock:
            state, checks, times = self.machine.state, self.checks, self._times
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            return {
                "state": state.name,
                "prompt": state.prompt,
                "reasons": list(state.reasons),
                "message": state.message,
                "passing": state.passing,
                "session": state.session,
                "verdict": self._verdict,
                "review": state.name == REVIEW,
                "forensics": state.forensics,
                "last_capture_id": state.last_capture_id,
                "camera": camera,
                "checks": {
                    "available": checks is not None,
                    "bundle": checks.bundle if checks else None,
                    "error": self.checks_error,
                    "reload_error": self.reload_error,
                    "forensics": sorted(c.key for c in checks.forensics.checks) if checks else [],
                },
                "store": {"ok": self.storage.store is not None, "error": self.storage.error},
                "fps": round((len(times) - 1) / span, 2) if span > 0 else 0.0,
                "loop_age_s": round(time.monotonic() - self._heartbeat, 3),
                "counters": {**grabbed, **self.counters},
            }

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of /health (kiosk.service.health)."""
        snap = self.snapshot()
        facts = HealthFacts(
            checks=self.checks,
            checks_error=self.checks_error,
            reload_error=self.reload_error,
            failing_frames=self._failing_frames,
            loop_age_s=snap["loop_age_s"],
            stall_s=self.config.service.stall_s,
            camera=snap["camera"],
            state=snap["state"],
            store_down=self.storage.down,
            store_problems=self.storage.problems(),
        )
        return assess(facts)

    def review_image(self) -> tuple[int, np.ndarray] | None:
        """(session, full-resolution still) while the operator reviews it, else None."""
        held, state = self._held, self.machine.state
        if held is None or state.name not in HOLDS_STILL:
            return None
        return state.session, held.image

    def wait_preview(
        self, after: int, timeout: float
    ) -> tuple[PreviewFrame, Overlay | None] | None:
        """The newest preview frame with an index above `after`, waiting up to `timeout`."""
        frame = self.feed.wait_newer(after, timeout)
        return None if frame is None else (frame, self._overlay)

    # ---- loop thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._tick()
        except Exception:  # logged here; the stopped pings let systemd restart the service
            log.exception("the service loop died")
            raise

    def _tick(self) -> None:
        """One turn: heartbeat, commands, camera status, then at most one frame."""
        now = time.monotonic()
        with self._lock:
            self._heartbeat = now
        interval = self.notifier.watchdog_interval_s
        if interval is not None and now - self._last_ping >= interval:
            self.notifier.watchdog()
            self._last_ping = now
        self._run_commands()
        self._sync_camera()
        frame = self.feed.take(timeout=0.1)
        if frame is not None and self.checks is not None and self.machine.state.name in LIVE:
            self._check(frame)

    def _check(self, frame: PreviewFrame) -> None:
        try:
            verdict, analysis = self.checks.pipeline.check(
                frame.image, still_scale=frame.still_scale
            )
        except (KioskError, ValueError) as exc:
            log.warning("frame %d could not be checked: %s", frame.index, exc)
            with self._lock:
                self.counters["frame_errors"] += 1
                self._failing_frames += 1
            return
        with self._lock:
            self._failing_frames = 0
            self.counters["checked"] += 1
            self._times.append(time.monotonic())
            self._overlay = overlay_of(verdict, analysis)
            self._verdict = verdict.as_record(self.camera_name, frame.index)
            self._last_verdict = (verdict, frame.index)
        self._step(FrameChecked(tuple(verdict.reasons)))

    def _step(self, event: Event) -> State:
        before = self.machine.state
        with self._lock:
            state, actions = self.machine.step(event)
        if state.name != before.name:
            log.info("state %s -> %s", before.name, state.name)
            self.notifier.status(self._status_line())
        for action in actions:
            follow_up = self._act(action)
            if follow_up is not None:
                state = self._step(follow_up)
        return state

    def _act(self, action: str) -> Event | None:
        if action == TAKE_STILL:
            return self._take_still()
        if action == STORE_CAPTURE:
            return self._keep_still()
        if action == DISCARD_STILL:
            self._held = None
        return None

    def _take_still(self) -> Event:
        if self._last_verdict is None:
            return StillFailed("no checked frame to go with the photo")
        verdict, frame_index = self._last_verdict
        try:
            still = self.feed.capture_still()
        except CameraUnavailable as exc:
            return StillFailed(str(exc))
        self._held, event = examine(still, verdict, frame_index, self.checks.forensics)
        return event

    def _keep_still(self) -> Event:
        if self._held is None:
            return StoreFailed("no photo to store")
        return self.storage.keep(
            self._held,
            self.machine.state.forensics or {},
            self.checks.models if self.checks else {},
            self.camera_name,
            self.config.service.capture_quality,
            self.checks.token if self.checks else None,
        )

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                command.future.set_result(self._command(command))
            except Exception as exc:  # the caller must hear about it; the loop must go on
                log.exception("command failed")
                command.future.set_exception(exc)

    def _command(self, command: _Command) -> dict[str, Any]:
        state = self.machine.state
        if command.event is None:
            ok = self._load_checks(initial=False)
            return {"accepted": ok, "state": self.machine.state.name, "error": self.reload_error}
        if command.session is not None and command.session != state.session:
            error = "that photo is no longer under review"
            return {"accepted": False, "state": state.name, "error": error}
        if not isinstance(command.event, Accept | Retake) or state.name != REVIEW:
            error = f"no photo under review (state {state.name})"
            return {"accepted": False, "state": state.name, "error": error}
        new = self._step(command.event)
        return {
            "accepted": True,
            "state": new.name,
            "capture_id": new.last_capture_id if new.name == DONE else None,
            "error": new.message,
        }

    def _sync_camera(self) -> None:
        """Level-triggered: the machine hears the camera's state whenever it differs."""
        ok, message = self.feed.condition()
        name = self.machine.state.name
        if ok is False and name in LIVE | {CAPTURE}:
            self._step(CameraLost(message))
        elif ok and name == CAMERA_UNAVAILABLE:
            self._step(CameraBack())

    def _load_checks(self, initial: bool) -> bool:
        try:
            checks = self._checks_loader(self.config)
        except KioskError as exc:
            if initial or self.checks is None:
                log.error("checks unavailable: %s", exc)
                self.checks_error = str(exc)
                self._step(ChecksDown(str(exc)))
            else:
                log.error("reload failed, keeping bundle %s: %s", self.checks.bundle, exc)
                self.reload_error = str(exc)
            return False
        with self._lock:
            self.checks, self.checks_error, self.reload_error = checks, "", ""
        log.info("models loaded from bundle %s", checks.bundle)
        if self.machine.state.name == CHECKS_UNAVAILABLE:
            self._step(ChecksUp())
        return True

    def _status_line(self) -> str:
        state = self.machine.state
        return f"{state.name}: {state.prompt}"


def open_store(config: Config) -> CaptureStore:
    """The writer: recovery (re-index, quarantine) runs here and logs what it found."""
    store = config.store
    return CaptureStore(Path(store.path), Path(store.key_path), min_free_mb=store.min_free_mb)
