"""Reason codes of a rejected frame and what the applicant is told for each.

The codes are part of the `kiosk check --json` contract (the `reasons` list); the prompts are what
the console shows. Listed most urgent first: when several reasons hold, the first one's prompt is
shown, so a face that cannot be seen is dealt with before the state of the eyes.
"""

from __future__ import annotations

NO_FACE = "no_face"
SEVERAL_FACES = "several_faces"
FACE_TOO_SMALL = "face_too_small"
CHECK_ERROR = "check_error"
FACE_COVERED = "face_covered"
EYES_CLOSED = "eyes_closed"
MOUTH_OPEN = "mouth_open"

PROMPTS: dict[str, str] = {
    NO_FACE: "Please stand in front of the camera",
    SEVERAL_FACES: "Only one person please",
    FACE_TOO_SMALL: "Please move closer",
    CHECK_ERROR: "A check could not run: please call the operator",
    FACE_COVERED: "Please remove the face covering",
    EYES_CLOSED: "Please open your eyes",
    MOUTH_OPEN: "Please close your mouth",
}
READY_PROMPT = "Ready — hold still"
ERROR_PROMPT = "Camera or image problem: please call the operator"

# The reasons decided before any classifier runs (detection and the size gate).
GATE_REASONS = (NO_FACE, SEVERAL_FACES, FACE_TOO_SMALL)


def prompt_for(reasons: list[str] | tuple[str, ...]) -> str:
    """The prompt of the most urgent reason, or the ready prompt when there is none."""
    return next((PROMPTS[code] for code in PROMPTS if code in reasons), READY_PROMPT)
