"""Reason codes of a rejected frame and what the applicant is told for each.

The codes are part of the `kiosk check --json` contract (the `reasons` list); the prompts are what
the console shows, from a translation table (`MESSAGES`, one dict per language, chosen in
`[console] language` and on the console). Listed most urgent first: when several reasons hold,
the first one's prompt is shown, so a face that cannot be seen is dealt with before the state of
the eyes. Image quality (dark, over-exposed, blurred) comes before everything the classifiers
decide, and suppresses their reasons: nobody is told to open their eyes in the dark (kiosk/runtime/checks/).
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

# What the applicant reads, per language: every reason code (urgency order) and every state of
# the capture session (`state.<name>`, kiosk/service/state.py). Plain words, no codes or scores;
# those are for the operator. A language may leave keys out: English is used for them.
MESSAGES: dict[str, dict[str, str]] = {
    "en": {
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
        "state.present": "Checking — please look at the camera",
        "state.ready": "Ready — hold still",
        "state.countdown": "Hold still — photo in",
        "state.capture": "Taking the photo — hold still",
        "state.review": "Photo taken — please wait a moment",
        "state.hold": "Please wait — the operator will guide you",
        "state.storing": "Saving the photo…",
        "state.done": "Photo saved — next applicant please",
        "state.not_saved": "The photo could not be saved — the operator will help you",
        "state.camera_unavailable": "Camera unavailable — please call the operator",
        "state.checks_unavailable": "The kiosk is not ready — please call the operator",
        "state.error": "Camera or image problem: please call the operator",
    },
    "de": {
        NO_FACE: "Bitte stellen Sie sich vor die Kamera",
        SEVERAL_FACES: "Bitte nur eine Person",
        FACE_TOO_SMALL: "Bitte kommen Sie näher",
        CHECK_ERROR: "Eine Prüfung ist fehlgeschlagen: bitte rufen Sie das Personal",
        TOO_DARK: "Zu dunkel: bitte treten Sie ins Licht oder rufen Sie das Personal",
        OVEREXPOSED: "Zu viel Licht auf dem Gesicht: bitte rufen Sie das Personal",
        LOW_CONTRAST: "Das Bild ist zu blass: bitte rufen Sie das Personal",
        BLURRED: "Das Bild ist unscharf: bitte halten Sie still",
        MOTION_BLUR: "Bitte halten Sie still",
        MOVE_LEFT: "Bitte etwas nach links",
        MOVE_RIGHT: "Bitte etwas nach rechts",
        MOVE_UP: "Bitte etwas höher sitzen oder stehen",
        MOVE_DOWN: "Bitte etwas tiefer sitzen oder stehen",
        MOVE_BACK: "Bitte treten Sie etwas zurück",
        MOVE_CLOSER: "Bitte kommen Sie etwas näher",
        LOW_RESOLUTION: "Bitte kommen Sie näher an die Kamera",
        HEAD_TURNED: "Bitte schauen Sie gerade in die Kamera",
        HEAD_PITCHED: "Bitte halten Sie das Kinn gerade",
        HEAD_TILTED: "Bitte halten Sie den Kopf gerade",
        UNEVEN_LIGHT: "Ungleichmäßiges Licht im Gesicht: bitte rufen Sie das Personal",
        HEAD_COVERED: "Bitte nehmen Sie Hut oder Kopfbedeckung ab",
        FACE_COVERED: "Bitte nehmen Sie die Gesichtsbedeckung ab",
        EYES_CLOSED: "Bitte öffnen Sie die Augen",
        MOUTH_OPEN: "Bitte schließen Sie den Mund",
        BACKGROUND_NOT_PLAIN: "Bitte stellen Sie sich vor den einfarbigen Hintergrund",
        "state.present": "Prüfung läuft — bitte schauen Sie in die Kamera",
        "state.ready": "Bereit — bitte still halten",
        "state.countdown": "Bitte still halten — Foto in",
        "state.capture": "Foto wird aufgenommen — bitte still halten",
        "state.review": "Foto aufgenommen — bitte einen Moment warten",
        "state.hold": "Bitte warten — das Personal hilft Ihnen",
        "state.storing": "Foto wird gespeichert…",
        "state.done": "Foto gespeichert — die nächste Person bitte",
        "state.not_saved": "Das Foto konnte nicht gespeichert werden — das Personal hilft Ihnen",
        "state.camera_unavailable": "Kamera nicht verfügbar — bitte rufen Sie das Personal",
        "state.checks_unavailable": "Das Gerät ist nicht bereit — bitte rufen Sie das Personal",
        "state.error": "Kamera- oder Bildproblem: bitte rufen Sie das Personal",
    },
}
LANGUAGES = tuple(MESSAGES)
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch"}
# The reason codes with their English prompts, most urgent first (the order every ranking uses).
PROMPTS: dict[str, str] = {
    code: text for code, text in MESSAGES["en"].items() if not code.startswith("state.")
}
READY_PROMPT = MESSAGES["en"]["state.ready"]
ERROR_PROMPT = MESSAGES["en"]["state.error"]


def translate(key: str, language: str = "en") -> str:
    """The applicant's text for a reason code or `state.<name>` key, English where the language
    lacks it; an unknown key is returned as is (a newer service than its page, say)."""
    return MESSAGES.get(language, {}).get(key) or MESSAGES["en"].get(key, key)


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
