"""The session state machine on its own: events in, state and actions out."""

from __future__ import annotations

import pytest

from kiosk.contract.reasons import EYES_CLOSED, MOUTH_OPEN, NO_FACE, PROMPTS, SEVERAL_FACES
from kiosk.service.state import (
    CAMERA_UNAVAILABLE,
    CAPTURE,
    CHECKING,
    CHECKS_UNAVAILABLE,
    DISCARD_STILL,
    DONE,
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
    FrameChecked,
    Retake,
    SessionMachine,
    Settings,
    StillFailed,
    StillTaken,
    Stored,
    StoreFailed,
)

PASS: tuple[str, ...] = ()
EYES = (EYES_CLOSED,)
NOBODY = (NO_FACE,)


def feed(machine: SessionMachine, *frames: tuple[str, ...]) -> list[str]:
    actions: list[str] = []
    for reasons in frames:
        actions += machine.step(FrameChecked(reasons))[1]
    return actions


def to_review(machine: SessionMachine) -> None:
    assert feed(machine, *[PASS] * 7) == [TAKE_STILL]
    machine.step(StillTaken({"status": "not installed"}))
    assert machine.state.name == REVIEW


@pytest.fixture
def machine() -> SessionMachine:
    return SessionMachine(Settings(smoothing_frames=5, ready_frames=3))


def test_idle_until_a_face_then_present_until_the_window_fills(machine):
    feed(machine, NOBODY, NOBODY)
    assert machine.state.name == IDLE
    assert machine.state.prompt == PROMPTS[NO_FACE]
    feed(machine, EYES, EYES)
    assert machine.state.name == PRESENT
    feed(machine, EYES, EYES, EYES)
    assert machine.state.name == CHECKING
    assert machine.state.prompt == "Please open your eyes"


def test_prompt_does_not_flicker_on_one_odd_frame(machine):
    feed(machine, *[EYES] * 5)
    prompts = set()
    for reasons in (PASS, EYES, (MOUTH_OPEN,), EYES, EYES, PASS, EYES):
        feed(machine, reasons)
        prompts.add(machine.state.prompt)
    assert prompts == {"Please open your eyes"}


def test_hysteresis_keeps_a_reason_until_it_falls_below_a_quarter(machine):
    feed(machine, *[EYES] * 5)
    feed(machine, PASS, PASS, PASS)  # eyes in 2 of 5: no longer a majority, still over 1/4
    assert EYES_CLOSED in machine.state.reasons
    feed(machine, PASS)  # 1 of 5: cleared
    assert machine.state.reasons == ()
    assert machine.state.name == READY


def test_most_urgent_reason_is_prompted(machine):
    feed(machine, *[(SEVERAL_FACES, EYES_CLOSED)] * 5)
    assert machine.state.prompt == "Only one person please"


def test_still_taken_after_k_passing_frames_only(machine):
    feed(machine, *[PASS] * 5)  # window full: ready, 1st passing frame
    assert machine.state.name == READY
    assert machine.state.prompt == "Ready — hold still"
    assert feed(machine, EYES) == []  # one failing frame restarts the count
    assert machine.state.passing == 0
    assert feed(machine, PASS, PASS) == []
    assert feed(machine, PASS) == [TAKE_STILL]
    assert machine.state.name == CAPTURE
    assert machine.state.session == 1
    assert feed(machine, EYES) == []  # frames are ignored while the still is taken
    assert machine.state.name == CAPTURE


def test_accept_stores_then_waits_for_the_applicant_to_leave(machine):
    to_review(machine)
    assert machine.state.forensics == {"status": "not installed"}
    assert machine.step(Accept()) == (machine.state, [STORE_CAPTURE])
    assert machine.state.name == STORING
    state, actions = machine.step(Stored("id-1"))
    assert (state.name, state.last_capture_id, actions) == (DONE, "id-1", [DISCARD_STILL])
    assert feed(machine, *[PASS] * 10) == []  # same applicant still there: no second photo
    assert machine.state.name == DONE
    feed(machine, NOBODY, NOBODY, NOBODY)
    assert machine.state.name == IDLE


def test_retake_discards_and_starts_over(machine):
    to_review(machine)
    state, actions = machine.step(Retake())
    assert (state.name, actions, state.forensics) == (IDLE, [DISCARD_STILL], None)
    feed(machine, PASS)
    assert machine.state.name == PRESENT  # a fresh window for the retake


def test_store_failure_returns_to_review_with_the_reason(machine):
    to_review(machine)
    machine.step(Accept())
    state, _ = machine.step(StoreFailed("disk full"))
    assert state.name == REVIEW
    assert "disk full" in state.prompt
    assert machine.step(Accept())[1] == [STORE_CAPTURE]  # the operator can try again


def test_operator_events_outside_review_are_ignored(machine):
    feed(machine, *[EYES] * 5)
    before = machine.state
    assert machine.step(Accept()) == (before, [])
    assert machine.step(Retake()) == (before, [])
    assert machine.step(Stored("x")) == (before, [])


def test_still_failure_goes_back_to_checking(machine):
    feed(machine, *[PASS] * 7)
    state, actions = machine.step(StillFailed("camera gone"))
    assert (state.name, actions) == (PRESENT, [DISCARD_STILL])


def test_camera_loss_and_return(machine):
    feed(machine, *[EYES] * 5)
    state, _ = machine.step(CameraLost("unplugged"))
    assert state.name == CAMERA_UNAVAILABLE
    assert state.prompt == "Camera unavailable — retrying"
    assert feed(machine, PASS) == []
    assert machine.state.name == CAMERA_UNAVAILABLE
    assert machine.step(CameraBack())[0].name == IDLE


def test_camera_loss_during_capture_discards_but_review_keeps_the_still(machine):
    feed(machine, *[PASS] * 7)
    assert machine.step(CameraLost("unplugged"))[1] == [DISCARD_STILL]
    machine.step(CameraBack())
    to_review(machine)
    assert machine.step(CameraLost("unplugged"))[0].name == REVIEW


def test_checks_down_says_why_and_up_resumes(machine):
    state, _ = machine.step(ChecksDown("model file veil.tflite is missing"))
    assert state.name == CHECKS_UNAVAILABLE
    assert state.prompt == "Checks unavailable: model file veil.tflite is missing"
    assert machine.step(CameraLost("x"))[0].name == CHECKS_UNAVAILABLE
    assert machine.step(ChecksUp())[0].name == IDLE
