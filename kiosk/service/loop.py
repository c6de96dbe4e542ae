"""The service loop around the pure `SessionMachine`: camera thread, checks, forensics, store.

Two threads. The camera thread only grabs preview frames into a one-slot mailbox (a newer frame
replaces an unread one, and the drop is counted), reopening the camera with exponential backoff
when it fails. The loop thread takes the newest frame, runs the compliance pipeline on it, feeds
the verdict to the state machine and carries out the actions it returns (take the full-resolution
still, run forensics, store). Operator commands and reloads reach the loop through a queue, so
the machine and the pipeline are only ever touched by the loop thread.

Models are loaded once, at start: a `reload()` that fails (missing or altered file in a new bundle)
keeps the bundle already in use. The loop itself pings the systemd watchdog, so a loop stuck in a
model call stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kiosk.config import Config
from kiosk.contract.errors import KioskError
from kiosk.runtime.cameras.live import Camera, CameraUnavailable, make_camera
from kiosk.runtime.forensics.suite import Capture, ForensicSuite
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.pipeline import ACCEPT, CompliancePipeline, Verdict
from kiosk.runtime.vision.analysis import Analysis
from kiosk.runtime.vision.types import LANDMARK_GROUPS
from kiosk.service.notify import Notifier
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
    StillTaken,
    Stored,
    StoreFailed,
)
from kiosk.service.store import CaptureRecord, CaptureStore, StoreError

log = logging.getLogger(__name__)

LIVE = {IDLE, PRESENT, CHECKING, READY, DONE}
FORENSICS_NOT_INSTALLED = {"status": "not installed"}
FAILING_FRAMES = 10  # consecutive frames that could not be checked before /health says 503


@dataclass(frozen=True)
class Checks:
    """One loaded model bundle: the pipeline and forensic suite built from it, and its hashes."""

    pipeline: CompliancePipeline
    forensics: ForensicSuite
    models: dict[str, str]  # name -> sha256, as verified from the manifest
    bundle: str  # the resolved models directory's name (a deploy swaps a symlink to it)
    signature: str  # "verified" ([models] public_key set) or "unchecked"


def load_checks(config: Config) -> Checks:
    """Verify and load every model of the configured bundle; raises KioskError (ModelError).

    The models directory is resolved once, so a deploy that swaps a `current` symlink mid-load
    cannot mix two bundles.
    """
    bundle_dir = config.models_dir.resolve()
    pinned = dataclasses.replace(
        config, models=dataclasses.replace(config.models, dir=str(bundle_dir))
    )
    registry = ModelRegistry(bundle_dir, config.models.public_key_path)
    pipeline = CompliancePipeline(pinned, registry)
    forensics = ForensicSuite.from_config(pinned, registry)
    models = {name: entry.sha256 for name, entry in sorted(registry.entries.items())}
    return Checks(pipeline, forensics, models, bundle_dir.name, registry.signature)


@dataclass(frozen=True)
class PreviewFrame:
    index: int
    grabbed: float  # time.monotonic() when the camera thread got it
    image: np.ndarray


@dataclass(frozen=True)
class Overlay:
    """What the console draws over the preview: boxes in preview pixels, colour by verdict."""

    passing: bool
    faces: tuple[tuple[float, float, float, float], ...] = ()
    regions: tuple[tuple[str, tuple[float, float, float, float]], ...] = ()


@dataclass
class _Still:
    image: np.ndarray
    verdict: Verdict
    frame_index: int
    session_id: str


@dataclass(frozen=True)
class _Command:
    event: Event | None  # None: reload the models
    session: int | None
    future: Future[dict[str, Any]]


def overlay_of(verdict: Verdict, analysis: Analysis) -> Overlay:
    faces = tuple(_rounded(face.box) for face in analysis.faces)
    regions = []
    if analysis.landmarks is not None:
        for name in ("right_eye", "left_eye", "outer_lips"):
            points = analysis.landmarks.points[LANDMARK_GROUPS[name]]
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            pad = 0.25 * max(x1 - x0, y1 - y0)
            box = _rounded((x0 - pad, y0 - pad, x1 + pad, y1 + pad))
            regions.append(("mouth" if name == "outer_lips" else name, box))
    return Overlay(verdict.decision == ACCEPT, faces, tuple(regions))


def _rounded(box: Any) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (round(float(v), 1) for v in box)
    return x0, y0, x1, y1


class KioskService:
    """Owns the camera, the loaded checks, the store and the state machine; see module doc."""

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
        self.camera = camera or make_camera(
            s.source,
            s.preview_width,
            s.replay_fps,
            s.replay_loop,
            int(config.input.max_megapixels * 1e6),
        )
        self.camera_name = s.source
        self._checks_loader = checks_loader
        self._store_opener = store_opener or _open_store
        self.notifier = notifier or Notifier()
        self.machine = SessionMachine(Settings(s.smoothing_frames, s.ready_frames))
        self.checks: Checks | None = None
        self.checks_error = ""
        self.reload_error = ""
        self.store: CaptureStore | None = None
        self.store_error = ""
        self.store_refused = ""  # why the last save failed; empty once one succeeds
        self._failing_frames = 0  # consecutive frames the pipeline could not check

        self._lock = threading.Lock()  # guards everything the console reads
        self._frame_ready = threading.Condition(self._lock)
        self._camera_lock = threading.Lock()  # preview() and capture_still() never overlap
        self._stop = threading.Event()
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

        self._frame: PreviewFrame | None = None
        self._checked_index = -1
        self._camera_ok: bool | None = None  # None: not opened yet
        self._camera_message = "starting"
        self._retry_in = 0.0
        self._overlay: Overlay | None = None
        self._verdict: dict[str, Any] | None = None
        self._still: _Still | None = None
        # The verdict that triggered the still, its frame index and the preview's (height, width).
        self._last_verdict: tuple[Verdict, int, tuple[int, int]] | None = None
        self._heartbeat = time.monotonic()
        self._last_ping = 0.0
        self._times: deque[float] = deque(maxlen=30)
        self.counters = {"grabbed": 0, "checked": 0, "dropped": 0, "frame_errors": 0}

    # ---- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Load models and the store once, then start the camera and loop threads."""
        self._load_checks(initial=True)
        self._open_store()
        for target, name in ((self._camera_worker, "kiosk-camera"), (self._loop, "kiosk-loop")):
            if target == self._loop:  # READY=1 precedes the loop's first WATCHDOG=1
                self.notifier.ready(self._status_line())
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.notifier.stopping()
        self._stop.set()
        with self._lock:
            self._frame_ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._camera_lock:
            self.camera.close()
        if self.store is not None:
            self.store.close()
        self.notifier.close()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

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
        with self._lock:
            state = self.machine.state
            now = time.monotonic()
            fps = (
                (len(self._times) - 1) / (self._times[-1] - self._times[0])
                if len(self._times) > 1 and self._times[-1] > self._times[0]
                else 0.0
            )
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
                "camera": {
                    "ok": bool(self._camera_ok),
                    "message": self._camera_message,
                    "retry_in_s": round(self._retry_in, 2),
                },
                "checks": {
                    "available": self.checks is not None,
                    "bundle": self.checks.bundle if self.checks else None,
                    "error": self.checks_error,
                    "reload_error": self.reload_error,
                    "forensics": sorted(c.key for c in self.checks.forensics.checks)
                    if self.checks
                    else [],
                },
                "store": {"ok": self.store is not None, "error": self.store_error},
                "fps": round(fps, 2),
                "loop_age_s": round(now - self._heartbeat, 3),
                "counters": dict(self.counters),
            }

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 503 when no photo can be taken or kept: the checks cannot run,
        every frame fails, the loop is stuck, or the store is unavailable or refuses captures."""
        snap = self.snapshot()
        checks = self.checks
        stalled = snap["loop_age_s"] > self.config.service.stall_s
        failing = self._failing_frames >= FAILING_FRAMES
        problems = []
        if checks is None:
            problems.append(f"checks unavailable: {self.checks_error}")
        if failing:
            problems.append(f"the last {self._failing_frames} frames could not be checked")
        if stalled:
            problems.append(f"service loop stalled for {snap['loop_age_s']:.0f} s")
        if not snap["camera"]["ok"]:
            problems.append(f"camera unavailable: {snap['camera']['message']}")
        if self.reload_error:
            problems.append(f"last reload failed, previous bundle kept: {self.reload_error}")
        if self.store is None:
            problems.append(f"capture store unavailable: {self.store_error}")
        else:
            problems.extend(self.store.recovery.problems())
        if self.store_refused:
            problems.append(f"the last capture was not stored: {self.store_refused}")
        store_down = self.store is None or bool(self.store_refused)
        body = {
            "status": "ok" if not problems else "degraded",
            "models": checks.models if checks else {},
            "bundle": checks.bundle if checks else None,
            "signature": checks.signature if checks else None,
            # What a deploy judges a bundle by: "status" also covers the camera and the store,
            # and an unplugged camera must not roll a good bundle back.
            "checks": {
                "ok": checks is not None and not self.reload_error and not failing,
                "error": self.checks_error
                or self.reload_error
                or (f"{self._failing_frames} frames in a row failed" if failing else ""),
            },
            "camera": snap["camera"],
            "state": snap["state"],
            "problems": problems,
        }
        return (503 if checks is None or stalled or failing or store_down else 200), body

    def review_image(self) -> tuple[int, np.ndarray] | None:
        """(session, full-resolution still) while the operator reviews it, else None."""
        still, state = self._still, self.machine.state
        if still is None or state.name not in HOLDS_STILL:
            return None
        return state.session, still.image

    def wait_preview(
        self, after: int, timeout: float
    ) -> tuple[PreviewFrame, Overlay | None] | None:
        """The newest preview frame with an index above `after`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._frame is None or self._frame.index <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._frame_ready.wait(remaining)
            return self._frame, self._overlay

    # ---- camera thread ------------------------------------------------------------------------
    def _camera_worker(self) -> None:
        s = self.config.service
        backoff = s.retry_min_s
        index = 0
        while not self._stop.is_set():
            try:
                with self._camera_lock:
                    self.camera.open()
                while not self._stop.is_set():
                    with self._camera_lock:
                        image = self.camera.preview()
                    index += 1
                    with self._lock:
                        if self._frame is not None and self._frame.index > self._checked_index:
                            self.counters["dropped"] += 1
                        self._frame = PreviewFrame(index, time.monotonic(), image)
                        self.counters["grabbed"] += 1
                        if not self._camera_ok:
                            log.info("camera %s delivers frames", self.camera_name)
                        self._camera_ok, self._camera_message, self._retry_in = True, "", 0.0
                        self._frame_ready.notify_all()
                    backoff = s.retry_min_s
            except Exception as exc:  # any camera failure is retried, never fatal
                if not isinstance(exc, CameraUnavailable):
                    log.exception("camera %s failed", self.camera_name)
                with self._camera_lock:
                    self.camera.close()
                with self._lock:
                    if self._camera_ok or self._camera_message != str(exc):
                        log.warning("camera unavailable (%s); retrying in %.1f s", exc, backoff)
                    self._camera_ok, self._camera_message, self._retry_in = False, str(exc), backoff
                self._stop.wait(backoff)
                backoff = min(backoff * 2, s.retry_max_s)

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
        with self._lock:
            if self._frame is None or self._frame.index <= self._checked_index:
                self._frame_ready.wait(0.1)
            frame = self._frame
            fresh = frame is not None and frame.index > self._checked_index
            if fresh:
                self._checked_index = frame.index
        if fresh and self.checks is not None and self.machine.state.name in LIVE:
            self._check(frame)

    def _check(self, frame: PreviewFrame) -> None:
        try:
            verdict, analysis = self.checks.pipeline.check(frame.image)
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
            self._last_verdict = (verdict, frame.index, frame.image.shape[:2])
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
            return self._store_still()
        if action == DISCARD_STILL:
            self._still = None
        return None

    def _take_still(self) -> Event:
        if self._last_verdict is None:
            return StillFailed("no checked frame to go with the photo")
        verdict, frame_index, (preview_h, preview_w) = self._last_verdict
        try:
            with self._camera_lock:
                still = self.camera.capture_still()
        except CameraUnavailable as exc:
            return StillFailed(str(exc))
        # Boxes are rescaled by the two streams' sizes, per axis (a lores stream may be squeezed).
        sx, sy = still.shape[1] / preview_w, still.shape[0] / preview_h
        box = None
        if verdict.face_box is not None:
            x0, y0, x1, y1 = verdict.face_box
            box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
            verdict = dataclasses.replace(verdict, face_box=[round(v, 1) for v in box])
        self._still = _Still(still, verdict, frame_index, uuid.uuid4().hex)
        suite = self.checks.forensics
        if not suite.checks:
            return StillTaken(dict(FORENSICS_NOT_INSTALLED))
        started = time.monotonic()
        report = suite.run(Capture(still, box))
        log.info("forensics took %.2f s", time.monotonic() - started)
        return StillTaken(report)

    def _store_still(self) -> Event:
        still = self._still
        if still is None:
            return StoreFailed("no photo to store")
        if self.store is None and not self._open_store():
            return StoreFailed(f"capture store unavailable: {self.store_error}")
        ok, encoded = cv2.imencode(
            ".jpg",
            cv2.cvtColor(still.image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, self.config.service.capture_quality],
        )
        if not ok:
            return StoreFailed("the photo could not be encoded")
        record = CaptureRecord(
            session_id=still.session_id,
            created=datetime.now(UTC).isoformat(),
            decision=ACCEPT,
            verdict=still.verdict.as_record(self.camera_name, still.frame_index),
            forensics=self.machine.state.forensics or {},
            models=self.checks.models if self.checks else {},
        )
        try:
            capture_id = self.store.save(record, encoded.tobytes())
        except StoreError as exc:
            log.error("capture not stored: %s", exc)
            self.store_refused = str(exc)
            return StoreFailed(str(exc))
        self.store_refused = ""
        log.info("capture %s stored", capture_id)
        return Stored(capture_id)

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
        if command.event is None:
            ok = self._load_checks(initial=False)
            return {"accepted": ok, "state": self.machine.state.name, "error": self.reload_error}
        state = self.machine.state
        if command.session is not None and command.session != state.session:
            return {
                "accepted": False,
                "state": state.name,
                "error": "that photo is no longer under review",
            }
        if not isinstance(command.event, Accept | Retake) or state.name != REVIEW:
            return {
                "accepted": False,
                "state": state.name,
                "error": f"no photo under review (state {state.name})",
            }
        new = self._step(command.event)
        return {
            "accepted": True,
            "state": new.name,
            "capture_id": new.last_capture_id if new.name == DONE else None,
            "error": new.message,
        }

    def _sync_camera(self) -> None:
        """Level-triggered: the machine hears the camera's state whenever it differs."""
        with self._lock:
            ok, message = self._camera_ok, self._camera_message
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

    def _open_store(self) -> bool:
        """Open the store; a store that cannot open is reported (snapshot, /health) and retried
        on the next Accept, never a crash: under systemd a crash would only loop."""
        try:
            store = self._store_opener(self.config)
        except KioskError as exc:
            log.error("capture store unavailable: %s", exc)
            self.store, self.store_error = None, str(exc)
            return False
        except Exception as exc:  # a store bug must not take the camera and console down with it
            log.exception("capture store unavailable")
            self.store = None
            self.store_error = f"unexpected {type(exc).__name__} opening the store; see the log"
            return False
        self.store, self.store_error = store, ""
        return True

    def _status_line(self) -> str:
        state = self.machine.state
        return f"{state.name}: {state.prompt}"


def _open_store(config: Config) -> CaptureStore:
    """The writer: recovery (re-index, quarantine) runs here and logs what it found."""
    store = config.store
    return CaptureStore(Path(store.path), Path(store.key_path), min_free_mb=store.min_free_mb)
