"""Framing: the token photo's crop, with its margins, must lie inside the frame, so crown, chin
and both sides of the head are in the picture and the office's format can be cut from it.

The crop is placed exactly as `kiosk.runtime.token` will cut the still (eyes levelled, head at the
format's middle chin-to-crown ratio, eye line at its target height). `value` is how far the crop
reaches past the frame's worst edge, as a share of the crop's height; `limit` is 0. The reason
says which way the applicant should move, in the applicant's own terms for a camera that is not
mirrored (the image's left edge is the applicant's right):

* past the left/right edge -> move_left / move_right; past the top -> move_down (the head is
  too high); past the bottom -> move_up;
* past two opposite edges (the crop is larger than the frame) -> move_back;
* inside, but the face so small that the token would be enlarged more than MAX_UPSCALE x (more
  than the x4 super-resolution model can give) -> move_closer.
"""

from __future__ import annotations

from typing import Any

from kiosk.config import TokenConfig
from kiosk.contract.reasons import (
    MOVE_BACK,
    MOVE_CLOSER,
    MOVE_DOWN,
    MOVE_LEFT,
    MOVE_RIGHT,
    MOVE_UP,
)
from kiosk.runtime.checks.base import CheckResult
from kiosk.runtime.token.geometry import measure_head, outside_share, pick_format, place
from kiosk.runtime.vision.analysis import Analysis

MAX_UPSCALE = 4.0  # the SR model's factor: beyond it the token would be blurred

# Image edge the crop passes -> what the applicant is asked to do (camera not mirrored).
_MOVE = {"left": MOVE_LEFT, "right": MOVE_RIGHT, "top": MOVE_DOWN, "bottom": MOVE_UP}


class Framing:
    """The crop of the token format (`[token] default_format`) against the analysed frame."""

    name = "framing"
    reason = MOVE_BACK  # the general one; each result names its direction
    threshold = 0.0
    quality = False
    suppressible = False

    def __init__(self, limits: Any = None, token: TokenConfig | None = None) -> None:
        self.format_name, self.format = pick_format(token or TokenConfig())

    def __call__(self, analysis: Analysis) -> CheckResult:
        if analysis.landmarks is None or analysis.gray is None:
            raise ValueError("framing needs the landmarks and the frame")
        height, width = analysis.gray.shape[:2]
        placement = place(measure_head(analysis.landmarks), self.format)
        outside = outside_share(placement, (width, height))
        worst = max(outside, key=outside.__getitem__)
        value = outside[worst]
        upscale = placement.scale / analysis.still_scale  # output px per still px
        details = {f"outside_{side}": share for side, share in outside.items()}
        details["token_upscale"] = round(upscale, 3)
        if value > self.threshold:
            opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
            reason = MOVE_BACK if outside[opposite[worst]] > 0 else _MOVE[worst]
        elif upscale > MAX_UPSCALE:  # then value/limit are the enlargement and its maximum
            return CheckResult.measured(upscale, MAX_UPSCALE, "max", MOVE_CLOSER, details)
        else:
            reason = None
        return CheckResult.measured(value, self.threshold, "max", reason, details)
