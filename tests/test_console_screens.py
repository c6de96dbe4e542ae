"""The console in Debian's chromium at the screen sizes kiosks use, and after a restart.

Every size must show the prompt, the picture and Accept/Retake without scrolling (issue 14: on
the 7" Pi touchscreen the buttons were at y=557 of 480). Screenshots of each size are kept under
the test's tmp dir (`screens/`), or under $CONSOLE_SCREENS when set (e.g. reports/console).
The service runs a fake pipeline on a replayed astronaut, so the page's behaviour is what is
tested here (the real pipeline is in test_console_e2e.py).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.config import ConsoleConfig
from kiosk.contract.reasons import MESSAGES
from kiosk.runtime.cameras.base import CameraUnavailable
from kiosk.runtime.cameras.live import FrameCamera
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.suite import ForensicSuite
from kiosk.service.console.app import create_app
from kiosk.service.console.server import ThreadedServer
from kiosk.service.loop import KioskService
from tests.test_console_e2e import browser  # noqa: F401 (fixture)
from tests.test_service_loop import EYES, GOOD, FakePipeline, fake_checks, make_config, wait_for

SIZES = [(800, 480), (1024, 600), (1280, 720), (1920, 1080), (720, 1280)]
# Everything the operator and applicant need, visible at once.
MUST_SHOW = ["#prompt", ".live", "#accept", "#retake", "#forensic-banner"]


class Flagging:
    """A forensic check that flags every still (the warning must be impossible to miss)."""

    key, needs_face = "jpeg", False

    def run(self, capture: Capture, artifacts: Artifacts) -> dict[str, Any]:
        return {"score": 0.93, "threshold": 0.5, "flagged": True}


class Passing(FakePipeline):
    kind = GOOD

    def check(self, rgb: np.ndarray, still_scale: float = 1.0):  # every frame the same verdict
        return super().check(np.full_like(rgb, self.kind), still_scale)


class EyesClosed(Passing):
    kind = EYES  # never photographed: the preview stays live


def camera(astronaut: np.ndarray, fps: float = 15.0) -> FrameCamera:
    canvas = np.full((720, 960, 3), 90, np.uint8)
    canvas[104:616, 224:736] = astronaut
    return FrameCamera(
        lambda: (canvas for _ in range(1)), 640, fps=fps, loop=True, name="astronaut"
    )


def start_service(
    tmp_path: Path, astronaut: np.ndarray, pipeline: FakePipeline | None = None, **service: object
) -> KioskService:
    checks = fake_checks(pipeline or Passing())
    checks = type(checks)(
        checks.pipeline, ForensicSuite([Flagging()]), checks.models, checks.bundle, "unchecked"
    )
    config = make_config(tmp_path, **service)
    kiosk = KioskService(config, camera=camera(astronaut), checks_loader=lambda c: checks)
    kiosk.start()
    return kiosk


def screens_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENS") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_every_screen_size_shows_prompt_picture_and_buttons_without_scrolling(
    tmp_path,
    astronaut,
    browser,  # noqa: F811
):
    from playwright.sync_api import expect

    service = start_service(tmp_path, astronaut)
    server = ThreadedServer(create_app(service, ConsoleConfig()))
    shots = screens_dir(tmp_path)
    try:
        page = browser.new_page(viewport={"width": 800, "height": 480})
        page.goto(server.url)
        expect(page.locator("#accept")).to_be_enabled(timeout=10_000)
        banner = page.locator("#forensic-banner")
        expect(banner).to_contain_text("Forensic warning")
        expect(banner).to_have_class("banner flagged")
        expect(page.locator("#accept")).to_contain_text("Accept anyway")
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(300)
            page.screenshot(path=str(shots / f"review-{width}x{height}.png"))
            scroll = page.evaluate(
                "[document.scrollingElement.scrollHeight, document.scrollingElement.scrollWidth]"
            )
            assert scroll[0] <= height and scroll[1] <= width, (width, height, scroll)
            for selector in MUST_SHOW:
                box = page.locator(selector).bounding_box()
                assert box is not None, (selector, width, height)
                inside = (
                    box["x"] >= 0
                    and box["y"] >= 0
                    and box["x"] + box["width"] <= width + 0.5
                    and box["y"] + box["height"] <= height + 0.5
                )
                assert inside, (selector, width, height, box)
            picture = page.locator(".live").bounding_box()
            assert picture["height"] >= 0.3 * height, (width, height, picture)  # not a sliver
        # The language switch: the applicant's prompt in German, the state unchanged.
        page.select_option("#language", "de")
        expect(page.locator("#prompt")).to_have_text(MESSAGES["de"]["state.review"])
    finally:
        server.stop()
        service.stop()


def test_preview_reconnects_after_a_service_restart_and_shutdown_is_quick(
    tmp_path,
    astronaut,
    browser,  # noqa: F811
):
    first = start_service(tmp_path / "a", astronaut, EyesClosed())
    server = ThreadedServer(create_app(first, ConsoleConfig()))
    port = server.port
    page = browser.new_page(viewport={"width": 1024, "height": 600})
    page.goto(server.url)
    wait_for(lambda: first.snapshot()["state"] == "checking", timeout=10)
    wait_for(lambda: server.server.config.app.state.viewers.taken == 1, timeout=10)

    began = time.monotonic()
    server.stop()  # with the page's MJPEG stream open
    first.stop()
    took = time.monotonic() - began
    assert took < 1.5, f"shutdown took {took:.2f} s with a console open"

    second = start_service(tmp_path / "b", astronaut, EyesClosed())
    app = create_app(second, ConsoleConfig())
    again = ThreadedServer(app, port=port)
    try:
        # The page reopens its preview by itself: a new stream on the new service.
        wait_for(lambda: app.state.viewers.taken == 1, timeout=10)
        page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
    finally:
        again.stop()
        second.stop()


class Unpluggable(FrameCamera):
    """The astronaut replay until `unplugged` is set: then every open and frame fails."""

    unplugged = threading.Event()

    def open(self) -> None:
        if self.unplugged.is_set():
            raise CameraUnavailable("no camera on /dev/video0")
        super().open()

    def preview(self) -> np.ndarray:
        if self.unplugged.is_set():
            raise CameraUnavailable("camera stopped delivering frames")
        return super().preview()


def test_lost_camera_blanks_the_preview_and_figures(tmp_path, astronaut, browser):  # noqa: F811
    from playwright.sync_api import expect

    canvas = np.full((720, 960, 3), 90, np.uint8)
    canvas[104:616, 224:736] = astronaut
    unpluggable = Unpluggable(
        lambda: (canvas for _ in range(1)), 640, fps=15.0, loop=True, name="cam"
    )
    unpluggable.unplugged = threading.Event()
    config = make_config(tmp_path, retry_min_s=0.05, retry_max_s=0.2)
    service = KioskService(
        config, camera=unpluggable, checks_loader=lambda c: fake_checks(EyesClosed())
    )
    service.start()
    server = ThreadedServer(create_app(service, ConsoleConfig()))
    try:
        page = browser.new_page(viewport={"width": 800, "height": 480})
        page.goto(server.url)
        expect(page.locator("#preview")).to_be_visible(timeout=10_000)
        expect(page.locator("#fps")).to_contain_text("checks/s", timeout=10_000)
        unpluggable.unplugged.set()
        expect(page.locator("#blank")).to_be_visible(timeout=10_000)
        expect(page.locator("#preview")).to_be_hidden()
        expect(page.locator("#fps")).to_have_text("—")
        assert page.locator("#checks tr").count() == 0  # no stale verdict
        expect(page.locator("#prompt")).to_have_text(MESSAGES["en"]["state.camera_unavailable"])
        unpluggable.unplugged.clear()  # plugged back in: the picture returns by itself
        expect(page.locator("#preview")).to_be_visible(timeout=10_000)
    finally:
        server.stop()
        service.stop()
