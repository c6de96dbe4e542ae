"""The service loop with fakes for the camera and the pipeline (fast), and with the real model
loader for missing/altered model files; the console tests reuse the fakes from here."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from kiosk.config import Config, parse_config
from kiosk.contract.errors import ConfigError
from kiosk.contract.reasons import EYES_CLOSED, NO_FACE
from kiosk.runtime.cameras.base import CameraUnavailable, Still, StreamGeometry
from kiosk.runtime.cameras.live import FrameCamera, make_camera
from kiosk.runtime.forensics.suite import ForensicSuite
from kiosk.runtime.pipeline import ACCEPT, REJECT, Verdict
from kiosk.runtime.vision.analysis import Analysis
from kiosk.runtime.vision.types import Face
from kiosk.service.bundle import Checks, load_checks
from kiosk.service.loop import KioskService
from kiosk.service.notify import Notifier
from kiosk.service.state import Accept, Resume, Retake
from kiosk.service.store import CaptureStore
from tests.conftest import REPO

# Fake frames are 64x48 and carry their verdict in their pixel value; the preview is 32 wide.
NOBODY, EYES, GOOD = 0, 1, 2
FACE_BOX = (8.0, 6.0, 24.0, 22.0)  # in preview pixels


def frame(kind: int) -> np.ndarray:
    return np.full((48, 64, 3), kind, np.uint8)


class FakePipeline:
    """Verdict from the frame's pixel value; `gate` (when set) blocks check() to fake a hang."""

    def __init__(self) -> None:
        self.gate: threading.Event | None = None

    def check(self, rgb: np.ndarray, still_scale: float = 1.0) -> tuple[Verdict, Analysis]:
        if self.gate is not None:
            self.gate.wait()
        kind = int(rgb[0, 0, 0])
        if kind == NOBODY:
            return Verdict(REJECT, [NO_FACE], 0, None), Analysis([], None, None, None, NO_FACE)
        face = Face(FACE_BOX, 0.99, np.zeros((5, 2)))
        reasons = [EYES_CLOSED] if kind == EYES else []
        verdict = Verdict(REJECT if reasons else ACCEPT, reasons, 1, list(FACE_BOX))
        return verdict, Analysis([face], face, None, None, None)


def fake_checks(pipeline: FakePipeline | None = None, bundle: str = "bundle-1") -> Checks:
    return Checks(
        pipeline or FakePipeline(), ForensicSuite([]), {"fake": "ab" * 32}, bundle, "unchecked"
    )


def make_config(tmp_path: Path, **service: object) -> Config:
    settings: dict[str, object] = {"smoothing_frames": 3, "ready_frames": 2, "countdown_s": 0}
    settings |= {"retry_min_s": 0.01, "retry_max_s": 0.05, "replay_fps": 200.0}
    settings |= service
    return parse_config(
        {
            "service": settings,
            "store": {
                "dir": str(tmp_path / "store"),
                "key_file": str(tmp_path / "key"),
                "min_free_mb": 0,
            },
        }
    )


def replay(kinds: list[int], loop: bool = True, fps: float = 200.0) -> FrameCamera:
    return FrameCamera(lambda: (frame(k) for k in kinds), 32, fps=fps, loop=loop, name="replay")


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def started() -> Iterator[Callable[..., KioskService]]:
    services: list[KioskService] = []

    def start(
        config: Config,
        camera: object,
        loader: Callable[[Config], Checks] = lambda c: fake_checks(),
        **kw: object,
    ) -> KioskService:
        service = KioskService(config, camera=camera, checks_loader=loader, **kw)
        service.start()
        services.append(service)
        return service

    yield start
    for service in services:
        service.stop()


def state_is(service: KioskService, name: str) -> Callable[[], bool]:
    return lambda: service.snapshot()["state"] == name


def test_accept_stores_the_full_resolution_still_and_retake_does_not(tmp_path, started):
    service = started(make_config(tmp_path), replay([GOOD]))
    wait_for(state_is(service, "review"))
    snap = service.snapshot()
    assert snap["forensics"] == {"status": "not installed"}
    assert service.request(Retake()).result(5)["state"] == "hold"  # the operator coaches
    assert service.store.list() == []
    time.sleep(0.2)
    assert service.snapshot()["state"] == "hold"  # no new photo until the operator resumes
    assert service.request(Resume()).result(5)["state"] == "present"

    wait_for(state_is(service, "review"))
    stale = service.request(Accept(), session=999).result(5)
    assert not stale["accepted"]
    session = service.snapshot()["session"]
    result = service.request(Accept(), session=session).result(5)
    assert result["accepted"] and result["state"] == "done"
    [record] = service.store.list()
    assert record["id"] == result["capture_id"]
    assert record["models"] == {"fake": "ab" * 32}
    assert record["verdict"]["face_box"] == [2 * v for v in FACE_BOX]  # rescaled to the still
    import cv2

    image = cv2.imdecode(np.frombuffer(service.store.load_image(record["id"]), np.uint8), 1)
    assert image.shape == (48, 64, 3)  # the full frame, not the 32-px preview
    assert service.request(Accept()).result(5)["accepted"] is False  # nothing under review now


def test_prompt_follows_the_frames(tmp_path, started):
    kinds = [NOBODY] * 3
    camera = FrameCamera(lambda: (frame(k) for k in kinds), 32, fps=200.0, loop=True)
    service = started(make_config(tmp_path), camera)
    wait_for(lambda: service.snapshot()["camera"]["ok"])
    assert service.snapshot()["prompt"] == "Please stand in front of the camera"
    kinds[:] = [EYES] * 3
    wait_for(lambda: service.snapshot()["prompt"] == "Please open your eyes")


class FlakyCamera:
    """Refuses to open `fail_opens` times, then delivers `frames_per_open` frames and 'unplugs'."""

    def __init__(self, fail_opens: int, frames_per_open: int) -> None:
        self.fail_opens, self.frames_per_open = fail_opens, frames_per_open
        self.opens = self.attempts = self.left = 0
        self.attempt_times: list[float] = []

    def open(self) -> None:
        self.attempts += 1
        self.attempt_times.append(time.monotonic())
        if self.attempts <= self.fail_opens:
            raise CameraUnavailable("no camera on /dev/video0")
        self.opens += 1
        self.left = self.frames_per_open

    def preview(self) -> np.ndarray:
        time.sleep(0.002)
        if self.left <= 0:
            raise CameraUnavailable("camera stopped delivering frames")
        self.left -= 1
        return frame(NOBODY)

    geometry = StreamGeometry((64, 48), (64, 48))

    def capture_still(self) -> Still:
        return Still(frame(NOBODY), self.geometry)

    def close(self) -> None:
        pass


def test_camera_failing_then_recovering_keeps_the_service_running(tmp_path, started):
    camera = FlakyCamera(fail_opens=3, frames_per_open=1000)
    config = make_config(tmp_path, retry_min_s=0.05, retry_max_s=0.5)
    service = started(config, camera)
    snap = wait_for(lambda: (s := service.snapshot())["state"] == "camera_unavailable" and s)
    assert snap["prompt"] == "Camera unavailable — please call the operator"
    assert snap["verdict"] is None and snap["fps"] == 0.0  # no stale figures
    assert snap["camera"]["message"] == "no camera on /dev/video0"
    wait_for(lambda: camera.opens)
    gaps = np.diff(camera.attempt_times)
    assert list(gaps >= 0.95 * np.array([0.05, 0.1, 0.2])) == [True] * 3  # backoff doubles
    wait_for(state_is(service, "idle"))
    assert service.health()[0] == 200


def test_unplugged_camera_and_ended_replay_are_retried(tmp_path, started):
    camera = FlakyCamera(fail_opens=0, frames_per_open=5)
    service = started(make_config(tmp_path), camera)
    wait_for(lambda: camera.opens >= 3)
    assert service.health()[0] == 200  # camera trouble degrades the service, checks stay up

    replayed = replay([NOBODY] * 4, loop=False)
    other = started(make_config(tmp_path / "b"), replayed)
    wait_for(lambda: "ended" in other.snapshot()["camera"]["message"])
    wait_for(lambda: other.snapshot()["counters"]["grabbed"] > 8)  # reopened from the start


def test_replay_paces_frames_at_the_configured_rate():
    clock = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    camera = FrameCamera(
        lambda: (frame(GOOD) for _ in range(3)),
        32,
        fps=10.0,
        loop=False,
        clock=lambda: clock[0],
        sleep=sleep,
    )
    camera.open()
    shapes = [camera.preview().shape for _ in range(3)]
    assert shapes == [(24, 32, 3)] * 3
    assert sleeps == pytest.approx([0.1, 0.1])
    assert camera.capture_still().image.shape == (48, 64, 3)
    with pytest.raises(CameraUnavailable, match="ended"):
        camera.preview()


def notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    return sock, path


def test_sd_notify_ready_status_and_watchdog_from_the_loop(tmp_path, started):
    sock, path = notify_socket(tmp_path)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"})
    assert notifier.watchdog_interval_s == pytest.approx(0.02)
    pipeline = FakePipeline()
    config = make_config(tmp_path, stall_s=1.0)
    service = started(
        config,
        replay([NOBODY, EYES, EYES, EYES]),
        lambda c: fake_checks(pipeline),
        notifier=notifier,
    )
    messages = [sock.recv(4096).decode() for _ in range(20)]
    assert messages[0].startswith("READY=1\nSTATUS=")
    assert sum(m == "WATCHDOG=1" for m in messages) >= 5
    assert any(m.startswith("STATUS=") for m in messages[1:])

    pipeline.gate = threading.Event()  # the next check() hangs: the loop is stuck
    wait_for(lambda: service.snapshot()["loop_age_s"] > 0.1)
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):  # drop the pings sent before the hang
        while True:
            sock.recv(4096)
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):  # no ping while stuck: systemd would restart the service
        sock.recv(4096)
    wait_for(lambda: service.health()[0] == 503, timeout=3)
    assert "stalled" in " ".join(service.health()[1]["problems"])
    pipeline.gate.set()
    wait_for(lambda: service.health()[0] == 200)
    sock.close()


def test_notifier_abstract_socket_and_no_socket():
    name = f"idkiosk-test-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
    notifier.status("checking\nnext")
    assert sock.recv(100) == b"STATUS=checking next"
    sock.close()
    silent = Notifier({})
    assert not silent.enabled and silent.watchdog_interval_s is None
    silent.watchdog()  # no socket: nothing to do, nothing raised


def model_bundle(tmp_path: Path) -> Path:
    """A copy of models/ (the kiosk refuses model files that resolve outside their bundle)."""
    bundle = tmp_path / "bundle-2"
    bundle.mkdir()
    for item in (REPO / "models").iterdir():
        shutil.copy(item, bundle / item.name)
    return bundle


def test_altered_model_refuses_checks_and_a_bad_reload_keeps_the_good_bundle(tmp_path, started):
    bundle = model_bundle(tmp_path)
    veil = bundle / "veil.tflite"
    veil.unlink()
    veil.write_bytes(b"not the model")
    config = dataclasses.replace(
        make_config(tmp_path), models=dataclasses.replace(Config().models, dir=str(bundle))
    )
    service = started(config, replay([GOOD]), load_checks)
    snap = service.snapshot()
    assert snap["state"] == "checks_unavailable"
    assert snap["prompt"] == "The kiosk is not ready — please call the operator"
    assert snap["message"].startswith("model file")  # the operator's detail
    assert "veil.tflite" in snap["message"] and "does not match" in snap["message"]
    code, body = service.health()
    assert code == 503 and body["models"] == {}

    shutil.copy(REPO / "models" / "veil.tflite", veil)
    assert service.reload().result(30)["accepted"]
    code, body = service.health()
    assert code == 200 and body["bundle"] == "bundle-2"
    assert body["models"]["veil"] == service.checks.models["veil"]
    good = service.checks
    wait_for(lambda: service.snapshot()["state"] != "checks_unavailable")

    (bundle / "eyes_closed.tflite").unlink()  # a bad deploy
    result = service.reload().result(30)
    assert not result["accepted"] and "eyes_closed" in result["error"]
    assert service.checks is good  # still checking with the last good bundle
    code, body = service.health()
    assert code == 200 and body["status"] == "degraded"
    assert any("previous bundle kept" in p for p in body["problems"])


def test_store_that_cannot_open_is_reported_and_retried_on_accept(tmp_path, started):
    blocker = tmp_path / "store"
    blocker.write_text("a file where the store directory should be")
    service = started(make_config(tmp_path), replay([GOOD]))
    assert not service.snapshot()["store"]["ok"]
    assert service.health()[0] == 503  # no photo could be kept
    wait_for(state_is(service, "review"))
    result = service.request(Accept()).result(5)
    assert result["state"] == "review" and "capture store unavailable" in result["error"]
    blocker.unlink()
    result = service.request(Accept()).result(5)
    assert result["state"] == "done" and result["capture_id"]
    assert isinstance(service.store, CaptureStore)
    assert service.health()[0] == 200


def test_store_that_refuses_a_capture_turns_health_503(tmp_path, started):
    service = started(make_config(tmp_path), replay([GOOD]))
    wait_for(state_is(service, "review"))
    service.store.min_free_bytes = 1 << 60  # the disk floor is reached
    result = service.request(Accept()).result(5)
    assert result["state"] == "review"
    code, body = service.health()
    assert code == 503 and any("not stored" in p for p in body["problems"])
    service.store.min_free_bytes = 0
    assert service.request(Accept()).result(5)["state"] == "done"
    assert service.health()[0] == 200


class BrokenPipeline(FakePipeline):
    def check(self, rgb: np.ndarray, still_scale: float = 1.0) -> tuple[Verdict, Analysis]:
        raise ValueError("crop of shape (56, 56), model expects (72, 72)")


def test_frames_that_keep_failing_turn_health_503(tmp_path, started):
    """A bundle that loads but fails on every frame is not healthy (a deploy must roll it back)."""
    service = started(
        make_config(tmp_path), replay([GOOD]), lambda c: fake_checks(BrokenPipeline())
    )
    wait_for(lambda: service.health()[0] == 503)
    assert "could not be checked" in " ".join(service.health()[1]["problems"])


def test_make_camera_replays_a_video_and_refuses_a_bad_camera_index(tmp_path):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for kind in (NOBODY, GOOD, GOOD):
        writer.write(frame(kind * 100))
    writer.release()
    camera = make_camera(str(path), preview_width=32, replay_fps=1000.0, replay_loop=False)
    camera.open()
    previews = [camera.preview() for _ in range(3)]
    assert [p.shape for p in previews] == [(24, 32, 3)] * 3
    assert previews[1].mean() > previews[0].mean() + 100
    assert camera.capture_still().image.shape == (48, 64, 3)
    with pytest.raises(CameraUnavailable, match="ended"):
        camera.preview()
    missing = make_camera(str(tmp_path / "nowhere"), 32, 10.0, True)
    missing.open()
    with pytest.raises(CameraUnavailable, match="does not exist"):
        missing.preview()
    with pytest.raises(ConfigError, match="camera index"):
        make_camera("camera:front", 32, 10.0, True)


def test_folder_replay_skips_files_it_cannot_decode(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), frame(GOOD * 100)[..., ::-1])
    (tmp_path / "README.md").write_text("not a photo")
    camera = make_camera(str(tmp_path), preview_width=32, replay_fps=1000.0, replay_loop=True)
    camera.open()
    assert all(camera.preview().shape == (24, 32, 3) for _ in range(4))
    (tmp_path / "a.png").unlink()
    with pytest.raises(CameraUnavailable, match="no frames"):
        for _ in range(3):
            camera.preview()
