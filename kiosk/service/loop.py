"""The service loop around the pure `SessionMachine`: it only schedules.

Two threads. The camera thread (`CameraFeed`, kiosk.service.feed) grabs preview frames into a
one-slot mailbox and reopens a failing camera with backoff. The loop thread takes the newest
frame, runs the compliance pipeline on it, feeds the verdict to the state machine and hands the
actions it returns to the capture unit (kiosk.service.capture: still, geometry, forensics,
record, store). Operator commands and reloads reach the loop through a queue, so the machine and
the pipeline are only ever touched by the loop thread. /health is judged by kiosk.service.health
from plain facts the loop gathers.

The capture itself runs on a third thread (`kiosk-capture`): forensics on the still, and after
Accept the token photo, JPEG encoding and the store write take seconds on a Pi, and the preview,
the prompts and the operator's commands must stay live meanwhile. The worker gets plain values
and hands the state machine's next event back through a result queue the loop drains; the
machine waits in `capture` (or `storing`) until then.

Models are loaded once, at start: a `reload()` that fails (missing or altered file in a new bundle)
keeps the bundle already in use. The loop itself pings the systemd watchdog, so a loop stuck in a
model call stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import logging
import queue
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.config import Config
from kiosk.contract.errors import KioskError
from kiosk.runtime.cameras.base import Camera, CameraUnavailable
from kiosk.runtime.cameras.live import make_camera
from kiosk.runtime.pipeline import (  # CompliancePipeline, TrackingPipeline: issue 16
    CompliancePipeline,
    TrackingPipeline,
    Verdict,
)
from kiosk.runtime.token.geometry import pick_format
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
    HOLD,
    HOLDS_STILL,
    IDLE,
    PRESENT,
    READY,
    REVIEW,
    STORE_CAPTURE,
    STORING,
    TAKE_STILL,
    Accept,
    CameraBack,
    CameraLost,
    ChecksDown,
    ChecksUp,
    Event,
    FrameChecked,
    Resume,
    Retake,
    SessionMachine,
    Settings,
    State,
    StillFailed,
    StoreFailed,
)
from kiosk.service.store import CaptureStore

log = logging.getLogger(__name__)

LIVE = {IDLE, PRESENT, CHECKING, READY, DONE, HOLD}
__all__ = ["FAILING_FRAMES", "Checks", "KioskService", "load_checks"]


@dataclass(frozen=True)
class _Command:
    event: Event | None  # None: reload the models
    session: int | None
    future: Future[dict[str, Any]]
    office: dict[str, str] | None = None  # with Accept: case_ref, operator


@dataclass(frozen=True)
class _Result:
    """What the capture worker hands back: the event, for the still of `session`."""

    session: int
    event: Event
    held: HeldStill | None = None


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
        self.machine = SessionMachine(
            Settings(
                s.smoothing_frames,
                s.ready_frames,
                s.countdown_s,
                s.retake_pause_s,
                s.retake_waits_for_operator,
            )
        )
        self.kiosk_id = s.kiosk_id or socket.gethostname()
        self.boot = secrets.token_hex(8)  # a page that sees it change reconnects its preview
        self.checks: Checks | None = None
        self.checks_error = ""
        self.reload_error = ""

        self._lock = threading.Lock()  # guards what the console reads
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[_Result] = queue.SimpleQueue()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="kiosk-capture")
        self._office: dict[str, str] = {}  # of the photo being stored
        self._pending: Future[dict[str, Any]] | None = None  # the Accept waiting for the store
        self._threads: list[threading.Thread] = []
        self._overlay: Overlay | None = None
        self._guide_format = pick_format(config.token)[1]  # the framing guide's crop
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
        if self.storage.open():
            self._recall_last_capture()
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
        # A forensic pass still running is not waited for; a store write in progress is.
        self._worker.shutdown(wait=True, cancel_futures=True)
        if self._pending is not None and not self._pending.done():
            self._pending.set_result({"accepted": False, "state": "stopped", "error": "stopping"})
        self.feed.close()
        self.storage.close()
        self.notifier.close()

    # ---- requests from the console and signals (any thread) -------------------------------------
    def request(
        self,
        event: Event | None,
        session: int | None = None,
        office: dict[str, str] | None = None,
    ) -> Future[dict[str, Any]]:
        """Queue an operator event (Accept/Retake/Resume) or, with None, a model reload; the
        future resolves to `{"accepted": bool, "state": ..., ...}` once the loop has handled it.
        `office` (with Accept): the case reference and operator filed with the capture."""
        future: Future[dict[str, Any]] = Future()
        self._commands.put(_Command(event, session, future, office))
        return future

    def reload(self) -> Future[dict[str, Any]]:
        return self.request(None)

    # ---- what the console shows ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        camera, grabbed = self.feed.status(), self.feed.counters
        now = time.monotonic()
        with self._lock:
            state, checks, times = self.machine.state, self.checks, self._times
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            return {
                "state": state.name,
                "prompt": state.prompt_in(self.config.console.language),
                "prompt_key": state.prompt_key,
                "countdown_s": (
                    round(max(0.0, state.shot_at - now), 2) if state.shot_at is not None else None
                ),
                "hold": {
                    "waiting": state.name == HOLD,
                    "for_operator": state.name == HOLD and state.hold_until is None,
                    "left_s": (
                        round(max(0.0, state.hold_until - now), 1)
                        if state.name == HOLD and state.hold_until is not None
                        else None
                    ),
                },
                "retakes": list(state.retakes),
                "kiosk_id": self.kiosk_id,
                "boot": self.boot,
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
                "store": {
                    "ok": not self.storage.down,
                    "error": self.storage.error,
                    "refused": self.storage.refused,
                },
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
        """One turn: heartbeat, capture results, commands, camera status, at most one frame."""
        now = time.monotonic()
        with self._lock:
            self._heartbeat = now
        interval = self.notifier.watchdog_interval_s
        if interval is not None and now - self._last_ping >= interval:
            self.notifier.watchdog()
            self._last_ping = now
        self._run_results()
        self._run_commands()
        self._sync_camera()
        frame = self.feed.take(timeout=0.1)
        if frame is not None and self.checks is not None and self.machine.state.name in LIVE:
            self._check(frame)

    def _check(self, frame: PreviewFrame) -> None:
        try:
            # issue 16 (tracking helper): the camera stream is tracked between detections, one
            # TrackingPipeline per loaded bundle (a reload starts afresh); docs/performance.md.
            # Stand-in pipelines (tests) are called as they are.
            pipeline, tracking = self.checks.pipeline, getattr(self, "_tracking", None)
            if isinstance(pipeline, CompliancePipeline):
                if tracking is None or tracking.pipeline is not pipeline:
                    tracking = self._tracking = TrackingPipeline(pipeline, self.config.tracking)
                pipeline = tracking
            verdict, analysis = pipeline.check(frame.image, still_scale=frame.still_scale)
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
            self._overlay = overlay_of(verdict, analysis, self._guide_format)
            self._verdict = verdict.as_record(self.camera_name, frame.index)
            self._last_verdict = (verdict, frame.index)
        self._step(FrameChecked(tuple(verdict.reasons), time.monotonic()))

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

    def _take_still(self) -> Event | None:
        """Grab the still here (the camera is the loop's), examine it on the worker."""
        if self._last_verdict is None:
            return StillFailed("no checked frame to go with the photo")
        verdict, frame_index = self._last_verdict
        try:
            still = self.feed.capture_still()
        except CameraUnavailable as exc:
            return StillFailed(str(exc))
        session, suite = self.machine.state.session, self.checks.forensics
        work_pixels = int(self.config.input.work_megapixels * 1e6)
        workers = self.config.forensics.workers

        def work() -> None:
            try:
                held, event = examine(still, verdict, frame_index, suite, work_pixels, workers)
            except Exception as exc:  # a forensic bug must not leave the machine in capture
                log.exception("the still could not be examined")
                self._results.put(_Result(session, StillFailed(f"{type(exc).__name__}: {exc}")))
                return
            self._results.put(_Result(session, event, held))

        self._worker.submit(work)
        return None

    def _keep_still(self) -> Event | None:
        """Token photo, JPEG and the store write on the worker; Stored/StoreFailed come back."""
        if self._held is None:
            return StoreFailed("no photo to store")
        state, held, checks = self.machine.state, self._held, self.checks
        office = {**self._office, "kiosk_id": self.kiosk_id, "retakes": list(state.retakes)}
        args = (
            held,
            state.forensics or {},
            checks.models if checks else {},
            self.camera_name,
            self.config.service.capture_quality,
            checks.token if checks else None,
            office,
        )

        def work() -> None:
            try:
                event = self.storage.keep(*args)
            except Exception as exc:  # the photo stays under review; Accept tries again
                log.exception("the capture could not be stored")
                event = StoreFailed(f"unexpected {type(exc).__name__} storing the photo")
            self._results.put(_Result(state.session, event))

        self._worker.submit(work)
        return None

    def _run_results(self) -> None:
        while True:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                return
            if result.session != self.machine.state.session:
                continue  # a still the machine gave up on (camera lost, say)
            if result.held is not None:
                if self.machine.state.name != CAPTURE:
                    continue
                self._held = result.held
            new = self._step(result.event)
            if self._pending is not None and new.name != STORING:
                self._pending.set_result(self._answer(new))
                self._pending = None

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                answer = self._command(command)
                if answer is None:  # answered when the store write comes back
                    self._pending = command.future
                else:
                    command.future.set_result(answer)
            except Exception as exc:  # the caller must hear about it; the loop must go on
                log.exception("command failed")
                command.future.set_exception(exc)

    def _command(self, command: _Command) -> dict[str, Any] | None:
        state = self.machine.state
        if command.event is None:
            ok = self._load_checks(initial=False)
            return {"accepted": ok, "state": self.machine.state.name, "error": self.reload_error}
        if isinstance(command.event, Resume):
            if state.name != HOLD:
                return {"accepted": False, "state": state.name, "error": "nothing to resume"}
            return {"accepted": True, "state": self._step(command.event).name, "error": ""}
        if command.session is not None and command.session != state.session:
            error = "that photo is no longer under review"
            return {"accepted": False, "state": state.name, "error": error}
        if not isinstance(command.event, Accept | Retake) or state.name != REVIEW:
            error = f"no photo under review (state {state.name})"
            return {"accepted": False, "state": state.name, "error": error}
        event = command.event
        if isinstance(event, Accept):
            self._office = dict(command.office or {})
        else:
            event = replace(event, at=time.monotonic())
        new = self._step(event)
        if new.name == STORING:
            return None
        return self._answer(new)

    @staticmethod
    def _answer(new: State) -> dict[str, Any]:
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
            with self._lock:  # a lost camera shows no stale boxes, verdict or rate
                self._overlay, self._verdict = None, None
                self._times.clear()
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

    def _recall_last_capture(self) -> None:
        """After a restart the console names the last stored capture, not "none yet"."""
        try:
            newest = self.storage.store.list(1)
        except KioskError as exc:
            log.warning("could not read the last capture: %s", exc)
            return
        if newest:
            with self._lock:
                self.machine.state = replace(self.machine.state, last_capture_id=newest[0]["id"])

    def _status_line(self) -> str:
        state = self.machine.state
        return f"{state.name}: {state.prompt}"


def open_store(config: Config) -> CaptureStore:
    """The writer: recovery (re-index, quarantine) runs here and logs what it found."""
    store = config.store
    return CaptureStore(Path(store.path), Path(store.key_path), min_free_mb=store.min_free_mb)
