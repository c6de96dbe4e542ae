"""The capture session as a pure state machine: events in, (state, actions) out, no I/O.

Keeping it pure lets every transition be unit-tested without a camera, models or threads; the
service loop (`kiosk.service.loop`) turns camera frames, operator clicks and store results into
events and carries out the actions it returns.

    idle ──face──► present ──window full──► checking ◄──► ready ──K passing frames──► capture
      ▲               ▲                                                                 │
      │               └───────────────────── still failed ◄─────────────────────────────┤
      ├──────────────────────────────────── retake ◄──────────────────────── review ◄───┘
      └── done (until the applicant leaves) ◄── storing ◄── accept ◄──────── review

`camera_unavailable` and `checks_unavailable` are entered from any live state and left when the
camera or the models come back. Prompts are smoothed: a reason is shown once it is in the majority
of the last N frames and kept until it falls to a quarter of them (hysteresis), so one odd frame
neither raises nor clears a prompt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from kiosk.contract.reasons import NO_FACE, PROMPTS, READY_PROMPT

IDLE, PRESENT, CHECKING, READY = "idle", "present", "checking", "ready"
CAPTURE, REVIEW, STORING, DONE = "capture", "review", "storing", "done"
CAMERA_UNAVAILABLE, CHECKS_UNAVAILABLE = "camera_unavailable", "checks_unavailable"

# States in which the operator has a still in front of them; camera loss does not discard it.
HOLDS_STILL = {REVIEW, STORING}

STATE_PROMPTS = {
    IDLE: PROMPTS[NO_FACE],
    PRESENT: "Checking — please look at the camera",
    READY: READY_PROMPT,
    CAPTURE: "Taking the photo — hold still",
    REVIEW: "Photo taken — operator: Accept (A) or Retake (R)",
    STORING: "Saving the photo…",
    DONE: "Photo saved — next applicant please",
    CAMERA_UNAVAILABLE: "Camera unavailable — retrying",
}


# ---- events -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameChecked:
    """One preview frame's verdict: the failed reasons (empty when every check passed)."""

    reasons: tuple[str, ...]


@dataclass(frozen=True)
class StillTaken:
    """The full-resolution still was taken and the forensic pass ran on it."""

    forensics: dict[str, Any]


@dataclass(frozen=True)
class StillFailed:
    message: str


@dataclass(frozen=True)
class Accept:
    pass


@dataclass(frozen=True)
class Retake:
    pass


@dataclass(frozen=True)
class Stored:
    capture_id: str


@dataclass(frozen=True)
class StoreFailed:
    message: str


@dataclass(frozen=True)
class CameraLost:
    message: str


@dataclass(frozen=True)
class CameraBack:
    pass


@dataclass(frozen=True)
class ChecksDown:
    message: str


@dataclass(frozen=True)
class ChecksUp:
    pass


Event = (
    FrameChecked
    | StillTaken
    | StillFailed
    | Accept
    | Retake
    | Stored
    | StoreFailed
    | CameraLost
    | CameraBack
    | ChecksDown
    | ChecksUp
)

# ---- actions ------------------------------------------------------------------------------------
TAKE_STILL, STORE_CAPTURE, DISCARD_STILL = "take_still", "store_capture", "discard_still"


@dataclass(frozen=True)
class Settings:
    smoothing_frames: int = 5  # N: window of per-frame verdicts the prompt is smoothed over
    ready_frames: int = 3  # K: consecutive passing frames before the still is taken


@dataclass(frozen=True)
class State:
    """Everything the console shows about the session; replaced, never mutated."""

    name: str = IDLE
    reasons: tuple[str, ...] = (NO_FACE,)  # smoothed reasons, most urgent first
    passing: int = 0  # consecutive passing frames while ready
    message: str = ""  # why the camera or the checks are unavailable, or a store error
    forensics: dict[str, Any] | None = None  # of the still under review
    last_capture_id: str | None = None
    session: int = 0  # increases for every still taken; the console names it on accept/retake

    @property
    def prompt(self) -> str:
        if self.name == CHECKS_UNAVAILABLE:
            return f"Checks unavailable: {self.message}"
        if self.name == CHECKING:
            return next(PROMPTS[r] for r in PROMPTS if r in self.reasons)
        if self.name == REVIEW and self.message:
            return f"Could not save the photo: {self.message} — Accept (A) to try again"
        return STATE_PROMPTS[self.name]


@dataclass
class Smoother:
    """Majority-on, quarter-off hysteresis per reason over the last N verdicts."""

    size: int
    window: deque[tuple[str, ...]] = field(default_factory=deque)
    active: frozenset[str] = frozenset()

    def push(self, reasons: tuple[str, ...]) -> tuple[str, ...]:
        self.window.append(reasons)
        while len(self.window) > self.size:
            self.window.popleft()
        counts: dict[str, int] = {}
        for frame_reasons in self.window:
            for reason in frame_reasons:
                counts[reason] = counts.get(reason, 0) + 1
        n = len(self.window)
        self.active = frozenset(
            r
            for r, c in counts.items()
            if 2 * c > n or (r in self.active and 4 * c > n)  # on by majority, off below 1/4
        )
        return tuple(r for r in PROMPTS if r in self.active)

    @property
    def full(self) -> bool:
        return len(self.window) >= self.size

    def clear(self) -> None:
        self.window.clear()
        self.active = frozenset()


class SessionMachine:
    """Feeds events through `step`; holds the smoothing window and the current `State`."""

    def __init__(self, settings: Settings, state: State | None = None) -> None:
        self.settings = settings
        self.smoother = Smoother(settings.smoothing_frames)
        self.state = state or State()

    def step(self, event: Event) -> tuple[State, list[str]]:
        """Apply one event; returns the new state and the actions the loop must carry out."""
        new, actions = self._transition(self.state, event)
        self.state = new
        return new, actions

    def _transition(self, s: State, event: Event) -> tuple[State, list[str]]:
        match event:
            case ChecksDown(message):
                self.smoother.clear()
                return replace(s, name=CHECKS_UNAVAILABLE, message=message, passing=0), []
            case ChecksUp() if s.name == CHECKS_UNAVAILABLE:
                return self._reset(s), []
            case CameraLost(message) if s.name not in HOLDS_STILL | {CHECKS_UNAVAILABLE}:
                self.smoother.clear()
                actions = [DISCARD_STILL] if s.name == CAPTURE else []
                return replace(s, name=CAMERA_UNAVAILABLE, message=message, passing=0), actions
            case CameraBack() if s.name == CAMERA_UNAVAILABLE:
                return self._reset(s), []
            case FrameChecked(reasons) if s.name == DONE:
                if self.smoother.push(reasons) == (NO_FACE,):  # the applicant has left
                    return self._reset(s), []
                return s, []
            case FrameChecked(reasons) if s.name in (IDLE, PRESENT, CHECKING, READY):
                return self._frame(s, reasons)
            case StillTaken(forensics) if s.name == CAPTURE:
                return replace(s, name=REVIEW, forensics=forensics, message=""), []
            case StillFailed(message) if s.name == CAPTURE:
                self.smoother.clear()
                return replace(s, name=PRESENT, message=message, passing=0), [DISCARD_STILL]
            case Accept() if s.name == REVIEW:
                return replace(s, name=STORING, message=""), [STORE_CAPTURE]
            case Retake() if s.name == REVIEW:
                return replace(self._reset(s), forensics=None), [DISCARD_STILL]
            case Stored(capture_id) if s.name == STORING:
                self.smoother.clear()
                done = replace(s, name=DONE, last_capture_id=capture_id, passing=0, message="")
                return done, [DISCARD_STILL]
            case StoreFailed(message) if s.name == STORING:
                return replace(s, name=REVIEW, message=message), []
        return s, []

    def _reset(self, s: State) -> State:
        self.smoother.clear()
        return replace(s, name=IDLE, reasons=(NO_FACE,), passing=0, message="")

    def _frame(self, s: State, reasons: tuple[str, ...]) -> tuple[State, list[str]]:
        if s.name == IDLE and NO_FACE in reasons:
            return s, []
        if s.name == IDLE:  # a subject arrived: start a fresh window
            self.smoother.clear()
        smoothed = self.smoother.push(reasons)
        if smoothed == (NO_FACE,) and self.smoother.full:
            return self._reset(s), []
        if not self.smoother.full and s.name in (IDLE, PRESENT):
            return replace(s, name=PRESENT, reasons=smoothed, passing=0), []
        if smoothed or reasons:
            return replace(s, name=CHECKING if smoothed else READY, reasons=smoothed, passing=0), []
        passing = s.passing + 1
        if passing >= self.settings.ready_frames:
            return (
                replace(s, name=CAPTURE, reasons=(), passing=passing, session=s.session + 1),
                [TAKE_STILL],
            )
        return replace(s, name=READY, reasons=(), passing=passing), []
