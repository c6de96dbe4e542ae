"""Follow the applicant's face between frames so the detector runs on a few frames only.

A face barely moves between two camera frames, yet detection is redone from scratch on each. The
tracker keeps the last *detected* face's patch (a keyframe template, on a quarter-size grayscale
copy of the frame) and finds it again in the next frames with normalised cross-correlation in a
window around the last box, refined to sub-pixel by a parabola through the peak. The tracked box
is the detected box moved by that shift, so its geometry stays the detector's (the landmark model
was trained on that detector's boxes). The template is never replaced by a tracked
patch, so the box cannot drift; `due()` says when to run the detector again instead: every
`redetect_every` frames, when the correlation drops under `min_correlation` (the face turned,
left, or something covers it), or when the whole frame changed more than `max_scene_change`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.runtime.vision.types import Face

# Quarter size: a 640x480 frame is tracked on 160x120, where a 100 px face is a 25 px template.
TRACK_SCALE = 4
THUMBNAIL = (32, 24)


@dataclass(frozen=True)
class TrackerSettings:
    """See kiosk.config.TrackingConfig for the meaning and bounds of each field."""

    redetect_every: int = 10
    min_correlation: float = 0.9
    max_scene_change: float = 12.0
    search_margin: float = 0.25


def small_copy(gray: np.ndarray) -> np.ndarray:
    """The quarter-size grayscale copy the tracker works on."""
    height, width = gray.shape[:2]
    size = (max(width // TRACK_SCALE, 1), max(height // TRACK_SCALE, 1))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def _subpixel(scores: np.ndarray, x: int, y: int) -> tuple[float, float]:
    """Offset of the true peak from (x, y) by a parabola through each axis' neighbours."""

    def vertex(left: float, centre: float, right: float) -> float:
        curvature = left - 2 * centre + right
        return 0.0 if curvature >= 0 else float(np.clip((left - right) / (2 * curvature), -1, 1))

    dx = (
        vertex(scores[y, x - 1], scores[y, x], scores[y, x + 1])
        if 0 < x < scores.shape[1] - 1
        else 0
    )
    dy = (
        vertex(scores[y - 1, x], scores[y, x], scores[y + 1, x])
        if 0 < y < scores.shape[0] - 1
        else 0
    )
    return dx, dy


class FaceTracker:
    """Per-stream state: the keyframe face, its template and the frame count since detection.

    One tracker follows one stream; `reset()` forgets it (a new source, a lost face).
    """

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.reset()

    def reset(self) -> None:
        self._face: Face | None = None
        self._template: np.ndarray | None = None
        self._origin = (0, 0)  # template's top-left in the keyframe's small copy
        self._thumbnail: np.ndarray | None = None
        self.since_detection = 0
        self.correlation = float("nan")

    @property
    def tracking(self) -> bool:
        return self._face is not None

    def due(self, small: np.ndarray) -> str | None:
        """Why the detector must run on this frame (None: the tracker may follow the face, or,
        when the last detection found none to follow, the scene is unchanged)."""
        if self._thumbnail is None:
            return "no_track"
        if self.since_detection + 1 >= self.settings.redetect_every:
            return "interval"
        thumbnail = cv2.resize(small, THUMBNAIL, interpolation=cv2.INTER_AREA)
        if float(cv2.absdiff(thumbnail, self._thumbnail).mean()) > self.settings.max_scene_change:
            return "scene_change"
        return None

    def start(self, face: Face | None, small: np.ndarray) -> None:
        """A detection ran on this frame: keep its face (None: nothing to follow) as keyframe."""
        self.since_detection = 0
        self.correlation = 1.0
        self._thumbnail = cv2.resize(small, THUMBNAIL, interpolation=cv2.INTER_AREA)
        self._face = None
        if face is None:
            return
        x0, y0, x1, y1 = (round(v / TRACK_SCALE) for v in face.box)
        height, width = small.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return
        self._face = face
        self._template = small[y0:y1, x0:x1].copy()
        self._origin = (x0, y0)

    def track(self, small: np.ndarray) -> Face | None:
        """The keyframe face moved to where its patch is in this frame, or None when the match
        is weaker than `min_correlation` (then the caller detects)."""
        if self._face is None or self._template is None:
            return None
        self.since_detection += 1
        t_height, t_width = self._template.shape
        margin = max(2, round(self.settings.search_margin * max(t_width, t_height)))
        ox, oy = self._origin
        height, width = small.shape[:2]
        sx0, sy0 = max(ox - margin, 0), max(oy - margin, 0)
        sx1, sy1 = min(ox + t_width + margin, width), min(oy + t_height + margin, height)
        window = small[sy0:sy1, sx0:sx1]
        if window.shape[0] < t_height or window.shape[1] < t_width:
            self.correlation = 0.0
            return None
        scores = cv2.matchTemplate(window, self._template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (x, y) = cv2.minMaxLoc(scores)
        self.correlation = float(best)
        if best < self.settings.min_correlation:
            return None
        dx, dy = _subpixel(scores, x, y)
        shift_x = (sx0 + x + dx - ox) * TRACK_SCALE
        shift_y = (sy0 + y + dy - oy) * TRACK_SCALE
        x0, y0, x1, y1 = self._face.box
        box = (x0 + shift_x, y0 + shift_y, x1 + shift_x, y1 + shift_y)
        keypoints = self._face.keypoints + np.array([shift_x, shift_y], np.float32)
        return dataclasses.replace(self._face, box=box, keypoints=keypoints)
