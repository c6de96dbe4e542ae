"""The session state machine on its own: events in, state and actions out."""

from __future__ import annotations

import pytest

from kiosk.contract.reasons import (
    EYES_CLOSED,
    MESSAGES,
    MOUTH_OPEN,
    NO_FACE,
    PROMPTS,
    SEVERAL_FACES,
)
from kiosk.service.state import (
    CAMERA_UNAVAILABLE,
    CAPTURE,
    CHECKING,
    CHECKS_UNAVAILABLE,
    DISCARD_STILL,
    DONE,
    HOLD,
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
    Resume,
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
    assert (state.name, actions, state.forensics) == (PRESENT, [DISCARD_STILL], None)
    assert state.prompt != PROMPTS[NO_FACE]  # the applicant is still there
    feed(machine, PASS)
    assert machine.state.name == PRESENT  # a fresh window for the retake


def test_store_failure_returns_to_review_with_the_reason(machine):
    to_review(machine)
    machine.step(Accept())
    state, _ = machine.step(StoreFailed("disk full"))
    assert state.name == REVIEW
    assert state.message == "disk full"  # for the operator
    assert state.prompt_key == "state.not_saved"  # the applicant reads no path or config key
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
    assert (state.prompt_key, state.message) == ("state.camera_unavailable", "unplugged")
    assert feed(machine, PASS) == []
    assert machine.state.name == CAMERA_UNAVAILABLE
    assert machine.step(CameraBack())[0].name == PRESENT  # who was there may still be there


def test_camera_loss_during_capture_discards_but_review_keeps_the_still(machine):
    feed(machine, *[PASS] * 7)
    assert machine.step(CameraLost("unplugged"))[1] == [DISCARD_STILL]
    machine.step(CameraBack())
    to_review(machine)
    assert machine.step(CameraLost("unplugged"))[0].name == REVIEW


def test_checks_down_says_why_and_up_resumes(machine):
    state, _ = machine.step(ChecksDown("model file veil.tflite is missing"))
    assert state.name == CHECKS_UNAVAILABLE
    assert state.message == "model file veil.tflite is missing"  # the operator's detail
    assert state.prompt_key == "state.checks_unavailable"
    assert machine.step(CameraLost("x"))[0].name == CHECKS_UNAVAILABLE
    assert machine.step(ChecksUp())[0].name == PRESENT


# ---- countdown, hold after Retake, no false "stand in front" (issue 14) --------------------------
def timed(machine: SessionMachine, reasons: tuple[str, ...], start: float, end: float) -> list:
    """Frames every 0.1 s from `start` to `end` (monotonic seconds); the actions they caused."""
    actions, at = [], start
    while at <= end + 1e-9:
        actions += machine.step(FrameChecked(reasons, at))[1]
        at += 0.1
    return actions


def test_countdown_runs_before_the_shot_and_a_failing_frame_stops_it():
    machine = SessionMachine(Settings(smoothing_frames=3, ready_frames=2, countdown_s=2.0))
    assert timed(machine, PASS, 0.0, 1.5) == []  # K frames passed long ago; the countdown has not
    assert machine.state.name == READY
    assert machine.state.prompt_key == "state.countdown"
    shot_at = machine.state.shot_at
    assert shot_at is not None and 2.0 <= shot_at <= 2.4
    timed(machine, EYES, 1.6, 1.9)
    assert (machine.state.name, machine.state.shot_at) == (CHECKING, None)
    assert timed(machine, PASS, 2.0, 3.9) == []  # starts again from the first passing frame
    assert timed(machine, PASS, 4.0, 4.5) == [TAKE_STILL]


def test_retake_holds_until_the_operator_resumes_without_a_stand_in_front_prompt():
    machine = SessionMachine(Settings(3, 2, retake_waits_for_operator=True))
    to_review(machine)
    state, actions = machine.step(Retake(at=10.0))
    assert (state.name, actions, state.retakes) == (HOLD, [DISCARD_STILL], ("operator",))
    assert timed(machine, PASS, 10.0, 60.0) == []  # the applicant stays; no shot, no re-arm
    assert machine.state.name == HOLD
    assert machine.state.prompt == MESSAGES["en"]["state.hold"]
    machine.step(Resume())
    assert machine.state.name == PRESENT
    assert machine.state.prompt != PROMPTS[NO_FACE]
    assert timed(machine, PASS, 61.0, 62.0) == [TAKE_STILL]


def test_retake_pause_rearms_by_itself_and_records_the_reason():
    machine = SessionMachine(Settings(3, 2, retake_pause_s=3.0))
    to_review(machine)
    machine.step(Retake(at=5.0, reason="expression"))
    assert machine.state.hold_until == 8.0
    assert timed(machine, PASS, 5.0, 7.9) == []
    assert timed(machine, PASS, 8.0, 9.0) == [TAKE_STILL]
    machine.step(StillTaken({"jpeg": {"flagged": True}, "ela": {"flagged": False}}))
    machine.step(Retake(at=9.0))
    assert machine.state.retakes == ("expression", "forensics:jpeg")
    machine.step(Resume())
    timed(machine, PASS, 9.0, 10.0)
    machine.step(StillTaken({}))
    machine.step(Accept())
    assert machine.state.retakes == ("expression", "forensics:jpeg")  # filed with the capture
    machine.step(Stored("x"))
    assert machine.state.retakes == ()  # the next applicant starts clean


def test_no_stand_in_front_prompt_to_someone_there_after_camera_or_checks_come_back(machine):
    feed(machine, *[EYES] * 5)
    machine.step(CameraLost("unplugged"))
    machine.step(CameraBack())
    assert machine.state.prompt != PROMPTS[NO_FACE]
    feed(machine, EYES, EYES)
    assert machine.state.prompt != PROMPTS[NO_FACE]
    feed(machine, *[NOBODY] * 5)  # only once the window saw nobody
    assert machine.state.prompt == PROMPTS[NO_FACE]


def test_hold_ends_when_the_applicant_leaves():
    machine = SessionMachine(Settings(3, 2, retake_waits_for_operator=True))
    to_review(machine)
    machine.step(Retake(at=1.0))
    feed(machine, NOBODY, NOBODY, NOBODY)
    assert machine.state.name == IDLE


def test_every_prompt_key_is_translated():
    machine = SessionMachine(Settings())
    keys = {f"state.{name}" for name in (PRESENT, READY, CAPTURE, REVIEW, STORING, DONE, HOLD)}
    keys |= {"state.countdown", "state.not_saved", "state.camera_unavailable"}
    keys |= {"state.checks_unavailable", *PROMPTS}
    for language in MESSAGES:
        assert keys <= set(MESSAGES[language]), language
    assert machine.state.prompt_in("de") == MESSAGES["de"][NO_FACE]
