"""End to end: the real pipeline on a replayed folder, the console in Debian's chromium.

The replay loops over three scenes (nobody, a face with closed eyes, a good face); the page's
prompt must follow them, the A key must store the photo under review and the R key must not.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.config import load_config
from kiosk.service.console.app import create_app
from kiosk.service.console.server import ThreadedServer
from kiosk.service.loop import KioskService
from tests.conftest import REPO
from tests.test_service_loop import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DATA = REPO / "tests" / "data"
FRAMES_PER_SCENE = 30
FPS = 15.0


def scene(path: Path | None) -> np.ndarray:
    """A 1280x960 grey frame (a 2x still over the 640-px preview), with the face crop scaled to
    440 px a little below the middle, where the passport crop fits (or nobody)."""
    canvas = np.full((960, 1280, 3), 128, np.uint8)
    if path is not None:
        face = cv2.imread(str(path))
        scale = 440 / max(face.shape[:2])
        face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        y, x = (960 - face.shape[0]) // 2 + 40, (1280 - face.shape[1]) // 2
        canvas[y : y + face.shape[0], x : x + face.shape[1]] = face
    return canvas


@pytest.fixture
def replay_folder(tmp_path: Path) -> Path:
    """Scenes as files named in play order; repeated frames are symlinks to one file each."""
    folder = tmp_path / "replay"
    folder.mkdir()
    # The good face stays three scenes long: after Retake the service holds only while someone is
    # in front of the camera (nobody left to coach ends the hold), and the photo may be taken
    # late in its scene, so a 2-s scene could end the hold before the page shows it.
    scenes = [None, DATA / "face_eyes_closed.jpg", *[DATA / "face_open.jpg"] * 3]
    index = 0
    for number, source in enumerate(scenes):
        original = tmp_path / f"scene{number}.png"
        cv2.imwrite(str(original), scene(source))
        for _ in range(FRAMES_PER_SCENE):
            (folder / f"{index:04d}.png").symlink_to(original)
            index += 1
    return folder


@pytest.fixture
def browser():
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        message = f"{CHROMIUM} is missing (apt install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_console_follows_the_replay_and_accept_stores_retake_does_not(
    tmp_path, replay_folder, browser
):
    from playwright.sync_api import expect

    base = load_config()
    config = dataclasses.replace(
        base,
        service=dataclasses.replace(
            base.service,
            source=str(replay_folder),
            replay_fps=FPS,
            smoothing_frames=3,
            ready_frames=2,
            countdown_s=0.0,  # scenes last 2 s (the countdown is tested in test_service_state)
        ),
        store=dataclasses.replace(
            base.store, dir=str(tmp_path / "store"), key_file=str(tmp_path / "key"), min_free_mb=0
        ),
        # The test photos are in-the-wild crops: one wears a hat and looks aside, both tilt
        # their heads, and their own background is around the head. This test is about the
        # console's flow, so those ICAO limits are opened (they are tested in test_icao_checks).
        icao=dataclasses.replace(
            base.icao,
            max_yaw_deg=45.0,
            max_pitch_deg=45.0,
            max_roll_deg=45.0,
            max_forehead_non_skin=1.0,
            max_background_edges=1.0,
            max_background_colour_std=255.0,
        ),
    )
    service = KioskService(config)
    service.start()
    server = ThreadedServer(create_app(service, config.console))
    try:
        page = browser.new_page()
        page.goto(server.url)
        prompt = page.locator("#prompt")
        expect(prompt).to_have_text("Please stand in front of the camera", timeout=10_000)
        expect(prompt).to_have_text("Please open your eyes", timeout=10_000)
        expect(page.locator("#checks")).to_contain_text("eyes_closed")
        expect(prompt).to_have_text(re.compile("^Photo taken"), timeout=10_000)
        expect(page.locator("#forensics")).not_to_have_text("—")
        expect(page.locator("#accept")).to_be_enabled()
        expect(page.locator("#still")).to_be_visible()  # the photo itself, not the live stream
        page.wait_for_function(
            "document.getElementById('still').naturalWidth === 1280"
        )  # the 1280x960 still

        page.keyboard.press("a")
        # (The token photo and the store write run on the capture worker; "Photo saved" shows
        # until the replay's next scene, nobody, a fraction of a second later.)
        wait_for(lambda: service.store.list(), timeout=10)
        [stored] = service.store.list()
        expect(page.locator("#last-capture")).to_have_text(stored["id"])
        assert stored["verdict"]["decision"] == "accept"
        assert stored["token"]["format"] == "icao_35x45"  # the passport photo is kept with it
        images = service.store.load_images(stored["id"])
        assert set(images) >= {"still", "token", "token_frontal"}

        # The replay moves on: nobody, then the next "applicant" is checked again.
        expect(prompt).to_have_text("Please stand in front of the camera", timeout=10_000)
        expect(prompt).to_have_text(re.compile("^Photo taken"), timeout=15_000)
        session = service.snapshot()["session"]
        page.keyboard.press("r")
        # Retake leaves the review and holds for the operator (no new photo until Go).
        wait_for(lambda: service.snapshot()["state"] == "hold")
        expect(page.locator("#resume")).to_be_visible()
        assert service.snapshot()["session"] == session
        page.keyboard.press("g")
        wait_for(lambda: service.snapshot()["state"] != "hold")
        assert len(service.store.list()) == 1
    finally:
        server.stop()
        service.stop()
