"""The capture session as a pure state machine: events in, (state, actions) out, no I/O.

Keeping it pure lets every transition be unit-tested without a camera, models or threads; the
service loop (`kiosk.service.loop`) turns camera frames, operator clicks and store results into
events and carries out the actions it returns.

    idle ──face──► present ──window full──► checking ◄──► ready ──K passing frames
      ▲               ▲ ▲                                      and the countdown──► capture
      │               │ └──────────────── still failed ◄──────────────────────────────┤
      │               └── hold (operator's Resume, or the pause) ◄── retake ◄── review ◄┘
      └── done (until the applicant leaves) ◄── storing ◄── accept ◄──────────── review

Before the shot `ready` counts down `countdown_s` (any failing frame stops it), so the applicant
sees it coming. After Retake the machine holds (`hold`) until the operator resumes or the
configured pause is over, so the operator can coach before the next shot. "Please stand in front
of the camera" is only said after the window saw nobody: a reset with someone there (retake,
camera or checks back) starts in `present`.

`camera_unavailable` and `checks_unavailable` are entered from any live state and left when the
camera or the models come back. Prompts are smoothed: a reason is shown once it is in the majority
of the last N frames and kept until it falls to a quarter of them (hysteresis), so one odd frame
neither raises nor clears a prompt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from kiosk.contract.reasons import NO_FACE, PROMPTS, translate

IDLE, PRESENT, CHECKING, READY = "idle", "present", "checking", "ready"
CAPTURE, REVIEW, STORING, DONE, HOLD = "capture", "review", "storing", "done", "hold"
CAMERA_UNAVAILABLE, CHECKS_UNAVAILABLE = "camera_unavailable", "checks_unavailable"

# States in which the operator has a still in front of them; camera loss does not discard it.
HOLDS_STILL = {REVIEW, STORING}


# ---- events -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameChecked:
    """One preview frame's verdict: the failed reasons (empty when every check passed), and when
    it was checked (monotonic seconds: the countdown and the pause after Retake count in it)."""

    reasons: tuple[str, ...]
    at: float = 0.0


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
    at: float = 0.0  # monotonic seconds: the pause after it counts from here
    reason: str = ""  # the operator's, filed with the capture; default: forensics or "operator"


@dataclass(frozen=True)
class Resume:
    """The operator is done coaching after a Retake: arm the next shot."""


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
    | Resume
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
    countdown_s: float = 0.0  # passing time shown to the applicant before the still is taken
    retake_pause_s: float = 0.0  # after Retake, hold this long before arming again...
    retake_waits_for_operator: bool = False  # ...or until the operator resumes


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
    shot_at: float | None = None  # ready: when the countdown ends (monotonic seconds)
    hold_until: float | None = None  # hold: when it re-arms by itself (None: operator's Resume)
    retakes: tuple[str, ...] = ()  # why each still of this applicant was retaken (reason codes)

    @property
    def prompt_key(self) -> str:
        """The applicant's prompt as a key of kiosk.contract.reasons.MESSAGES: plain words, no
        engineering detail (`message` is the operator's)."""
        if self.name == CHECKING:
            return next(r for r in PROMPTS if r in self.reasons)
        if self.name == IDLE:
            return NO_FACE
        if self.name == READY and self.shot_at is not None:
            return "state.countdown"
        if self.name == REVIEW and self.message:
            return "state.not_saved"
        return f"state.{self.name}"

    def prompt_in(self, language: str) -> str:
        return translate(self.prompt_key, language)

    @property
    def prompt(self) -> str:
        """The English prompt (logs, sd_notify STATUS, tests)."""
        return self.prompt_in("en")


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
                return self._restart(s), []
            case CameraLost(message) if s.name not in HOLDS_STILL | {CHECKS_UNAVAILABLE}:
                self.smoother.clear()
                actions = [DISCARD_STILL] if s.name == CAPTURE else []
                return replace(s, name=CAMERA_UNAVAILABLE, message=message, passing=0), actions
            case CameraBack() if s.name == CAMERA_UNAVAILABLE:
                return self._restart(s), []
            case FrameChecked(reasons) if s.name == DONE:
                if self.smoother.push(reasons) == (NO_FACE,):  # the applicant has left
                    return self._reset(s), []
                return s, []
            case FrameChecked(reasons, at) if s.name == HOLD:
                smoothed = self.smoother.push(reasons)
                if smoothed == (NO_FACE,) and self.smoother.full:  # nobody left to coach
                    return replace(self._reset(s), hold_until=None), []
                if s.hold_until is not None and at >= s.hold_until:
                    return self._restart(s), []
                return replace(s, reasons=smoothed), []
            case Resume() if s.name == HOLD:
                return self._restart(s), []
            case FrameChecked(reasons, at) if s.name in (IDLE, PRESENT, CHECKING, READY):
                return self._frame(s, reasons, at)
            case StillTaken(forensics) if s.name == CAPTURE:
                return replace(s, name=REVIEW, forensics=forensics, message=""), []
            case StillFailed(message) if s.name == CAPTURE:
                self.smoother.clear()
                return replace(s, name=PRESENT, message=message, passing=0), [DISCARD_STILL]
            case Accept() if s.name == REVIEW:
                return replace(s, name=STORING, message=""), [STORE_CAPTURE]
            case Retake(at, reason) if s.name == REVIEW:
                retakes = (*s.retakes, reason or _retake_reason(s.forensics))
                settings = self.settings
                if not settings.retake_waits_for_operator and settings.retake_pause_s <= 0:
                    again = self._restart(s)
                else:
                    self.smoother.clear()
                    until = None if settings.retake_waits_for_operator else at
                    if until is not None:
                        until += settings.retake_pause_s
                    again = replace(s, name=HOLD, passing=0, message="", hold_until=until)
                return replace(again, forensics=None, retakes=retakes), [DISCARD_STILL]
            case Stored(capture_id) if s.name == STORING:
                self.smoother.clear()
                done = replace(
                    s, name=DONE, last_capture_id=capture_id, passing=0, message="", retakes=()
                )
                return done, [DISCARD_STILL]
            case StoreFailed(message) if s.name == STORING:
                return replace(s, name=REVIEW, message=message), []
        return s, []

    def _reset(self, s: State) -> State:
        """Nobody there: the next applicant starts afresh."""
        self.smoother.clear()
        return replace(
            s, name=IDLE, reasons=(NO_FACE,), passing=0, message="", shot_at=None, retakes=()
        )

    def _restart(self, s: State) -> State:
        """Start checking again with whoever may be there (no "stand in front" prompt until the
        window has seen nobody)."""
        self.smoother.clear()
        return replace(
            s, name=PRESENT, reasons=(), passing=0, message="", shot_at=None, hold_until=None
        )

    def _frame(self, s: State, reasons: tuple[str, ...], at: float) -> tuple[State, list[str]]:
        if s.name == IDLE and NO_FACE in reasons:
            return s, []
        if s.name == IDLE:  # a subject arrived: start a fresh window
            self.smoother.clear()
        smoothed = self.smoother.push(reasons)
        if smoothed == (NO_FACE,) and self.smoother.full:
            return self._reset(s), []
        if not self.smoother.full and s.name in (IDLE, PRESENT):
            return replace(s, name=PRESENT, reasons=smoothed, passing=0, shot_at=None), []
        if smoothed or reasons:
            name = CHECKING if smoothed else READY
            return replace(s, name=name, reasons=smoothed, passing=0, shot_at=None), []
        passing = s.passing + 1
        shot_at = s.shot_at
        if shot_at is None and self.settings.countdown_s > 0:
            shot_at = at + self.settings.countdown_s  # the first passing frame starts it
        if passing >= self.settings.ready_frames and (shot_at is None or at >= shot_at):
            return (
                replace(
                    s,
                    name=CAPTURE,
                    reasons=(),
                    passing=passing,
                    session=s.session + 1,
                    shot_at=None,
                ),
                [TAKE_STILL],
            )
        return replace(s, name=READY, reasons=(), passing=passing, shot_at=shot_at), []


def _retake_reason(forensics: dict[str, Any] | None) -> str:
    """What a retake is filed under: the forensic checks that flagged the still, else the
    operator's judgement."""
    flagged = sorted(
        key
        for key, value in (forensics or {}).items()
        if isinstance(value, dict) and value.get("flagged")
    )
    return "forensics:" + ",".join(flagged) if flagged else "operator"
