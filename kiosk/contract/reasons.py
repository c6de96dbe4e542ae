"""Reason codes of a rejected frame and what the applicant is told for each.

The codes are part of the `kiosk check --json` contract (the `reasons` list); the prompts are what
the console shows. Listed most urgent first: when several reasons hold, the first one's prompt is
shown, so a face that cannot be seen is dealt with before the state of the eyes. Image quality
(dark, over-exposed, blurred) comes before everything the classifiers decide, and suppresses their
reasons: nobody is told to open their eyes in the dark (kiosk/runtime/checks/).
"""

from __future__ import annotations

NO_FACE = "no_face"
SEVERAL_FACES = "several_faces"
FACE_TOO_SMALL = "face_too_small"
CHECK_ERROR = "check_error"
TOO_DARK = "too_dark"
OVEREXPOSED = "overexposed"
LOW_CONTRAST = "low_contrast"
BLURRED = "blurred"
MOTION_BLUR = "motion_blur"
MOVE_LEFT = "move_left"
MOVE_RIGHT = "move_right"
MOVE_UP = "move_up"
MOVE_DOWN = "move_down"
MOVE_BACK = "move_back"
MOVE_CLOSER = "move_closer"
LOW_RESOLUTION = "low_resolution"
HEAD_TURNED = "head_turned"
HEAD_PITCHED = "head_pitched"
HEAD_TILTED = "head_tilted"
UNEVEN_LIGHT = "uneven_light"
HEAD_COVERED = "head_covered"
FACE_COVERED = "face_covered"
EYES_CLOSED = "eyes_closed"
MOUTH_OPEN = "mouth_open"
BACKGROUND_NOT_PLAIN = "background_not_plain"

PROMPTS: dict[str, str] = {
    NO_FACE: "Please stand in front of the camera",
    SEVERAL_FACES: "Only one person please",
    FACE_TOO_SMALL: "Please move closer",
    CHECK_ERROR: "A check could not run: please call the operator",
    TOO_DARK: "Too dark: please step into the light or call the operator",
    OVEREXPOSED: "Too much light on the face: please call the operator",
    LOW_CONTRAST: "The picture is washed out: please call the operator",
    BLURRED: "The picture is blurred: please hold still",
    MOTION_BLUR: "Please hold still",
    MOVE_LEFT: "Please move a little to your left",
    MOVE_RIGHT: "Please move a little to your right",
    MOVE_UP: "Please sit or stand a little higher",
    MOVE_DOWN: "Please sit or stand a little lower",
    MOVE_BACK: "Please step back a little",
    MOVE_CLOSER: "Please step a little closer",
    LOW_RESOLUTION: "Please move closer to the camera",
    HEAD_TURNED: "Please look straight at the camera",
    HEAD_PITCHED: "Please keep your chin level",
    HEAD_TILTED: "Please keep your head straight",
    UNEVEN_LIGHT: "Light falls unevenly on your face: please call the operator",
    HEAD_COVERED: "Please remove your hat or head covering",
    FACE_COVERED: "Please remove the face covering",
    EYES_CLOSED: "Please open your eyes",
    MOUTH_OPEN: "Please close your mouth",
    BACKGROUND_NOT_PLAIN: "Please stand in front of the plain background",
}
READY_PROMPT = "Ready — hold still"
ERROR_PROMPT = "Camera or image problem: please call the operator"

# The reasons decided before any classifier runs (detection and the size gate).
GATE_REASONS = (NO_FACE, SEVERAL_FACES, FACE_TOO_SMALL)
# Image-quality reasons: while one holds, the classifiers' reasons are not raised.
QUALITY_REASONS = (TOO_DARK, OVEREXPOSED, LOW_CONTRAST, BLURRED, MOTION_BLUR)


def prompt_for(reasons: list[str] | tuple[str, ...]) -> str:
    """The prompt of the most urgent reason, or the ready prompt when there is none."""
    return next((PROMPTS[code] for code in PROMPTS if code in reasons), READY_PROMPT)


def by_urgency(reasons: list[str] | tuple[str, ...]) -> list[str]:
    """The reasons once each, most urgent first (unknown codes last, in their order)."""
    order = {code: i for i, code in enumerate(PROMPTS)}
    unique = list(dict.fromkeys(reasons))
    return sorted(unique, key=lambda code: order.get(code, len(order)))
