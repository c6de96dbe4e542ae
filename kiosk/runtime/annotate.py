"""Draw what the pipeline saw: face box, 68 landmarks, the four crops, the head-pose axes and
every check's score or measured value against its limit (failed ones in red, suppressed ones
marked)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kiosk.contract.fileio import write_atomically
from kiosk.runtime.checks.base import CheckResult
from kiosk.runtime.pipeline import ACCEPT, Verdict
from kiosk.runtime.vision.analysis import Analysis

GREEN, RED, WHITE = (40, 200, 40), (220, 40, 40), (255, 255, 255)


def annotate(rgb: np.ndarray, verdict: Verdict, analysis: Analysis | None) -> np.ndarray:
    """An RGB copy of the frame with the pipeline's findings drawn on it."""
    canvas = rgb.copy()
    colour = GREEN if verdict.decision == ACCEPT else RED
    scale = max(canvas.shape[1] / 640, 0.5)
    thickness = max(1, round(2 * scale))
    if analysis is not None:
        for face in analysis.faces:
            x0, y0, x1, y1 = (round(v) for v in face.box)
            cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
        if analysis.landmarks is not None:
            for x, y in analysis.landmarks.points:
                cv2.circle(canvas, (round(x), round(y)), max(1, thickness), (255, 210, 0), -1)
        if analysis.regions is not None:
            _paste_crops(canvas, analysis, scale)
        pose = verdict.checks.get("head_pose")
        if analysis.landmarks is not None and pose is not None and pose.details:
            _draw_pose_axes(canvas, analysis, pose, thickness)
    lines = [
        (
            verdict.decision.upper()
            + (": " + ", ".join(verdict.reasons) if verdict.reasons else ""),
            colour,
        )
    ]
    lines += [
        (check_line(name, r), RED if r.failed and not r.suppressed else WHITE)
        for name, r in verdict.checks.items()
    ]
    if verdict.error:
        lines.append((verdict.error[:80], RED))
    size = 0.6 * scale if len(lines) <= 6 else 0.45 * scale
    step = 22 if len(lines) <= 6 else 16
    for i, (text, tint) in enumerate(lines):
        origin = (round(8 * scale), round((24 + step * i) * scale))
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), thickness + 2)
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, size, tint, thickness)
    return canvas


def check_line(name: str, result: CheckResult) -> str:
    """One check as text: a classifier's score against its threshold, a measure's value against
    its limit (with the bound: <= for a maximum, >= for a minimum)."""
    if result.error is not None:
        return f"{name} ERROR"
    if result.value is None:
        text = f"{name} {result.score:.3f} / {result.threshold:.3f}"
    elif result.value != result.value:  # NaN: nothing to measure in this frame
        text = f"{name} n/a"
    else:
        sign = {"max": "<=", "min": ">=", "abs_max": "|x|<="}[result.bound or "max"]
        text = f"{name} {result.value:.3g} {sign} {result.limit:.3g}"
        if result.details and name == "head_pose":
            yaw, pitch, roll = (result.details[k] for k in ("yaw_deg", "pitch_deg", "roll_deg"))
            text += f" (yaw {yaw:.0f} pitch {pitch:.0f} roll {roll:.0f})"
    return text + (" [suppressed]" if result.suppressed else "")


def _draw_pose_axes(
    canvas: np.ndarray, analysis: Analysis, pose: CheckResult, thickness: int
) -> None:
    """The head's axes from the nose tip: where a frontal face would show a dot, a turned one
    shows lines pointing the way it faces."""
    yaw, pitch, roll = (np.radians(pose.details[k]) for k in ("yaw_deg", "pitch_deg", "roll_deg"))
    points = analysis.landmarks.points
    length = float(np.linalg.norm(points[45] - points[36]))
    nose = points[30]
    rotation = cv2.Rodrigues(np.array([0.0, 0.0, roll]))[0]
    rotation = rotation @ cv2.Rodrigues(np.array([0.0, yaw, 0.0]))[0]
    rotation = rotation @ cv2.Rodrigues(np.array([pitch, 0.0, 0.0]))[0]
    for axis, tint in zip(np.eye(3), ((220, 40, 40), (40, 200, 40), (40, 120, 255)), strict=True):
        tip = nose + length * (rotation @ axis)[:2] * (1 if axis[2] == 0 else -1)
        start = (round(float(nose[0])), round(float(nose[1])))
        cv2.line(canvas, start, (round(float(tip[0])), round(float(tip[1]))), tint, thickness)


def _paste_crops(canvas: np.ndarray, analysis: Analysis, scale: float) -> None:
    regions = analysis.regions
    tiles = [regions.right_eye, regions.left_eye, regions.mouth, regions.face]
    side = round(72 * scale)
    x = canvas.shape[1] - side - 4
    for i, tile in enumerate(tiles):
        y = 4 + i * (side + 4)
        if y + side > canvas.shape[0]:
            break
        resized = cv2.resize(tile, (side, side), interpolation=cv2.INTER_AREA)
        canvas[y : y + side, x : x + side] = resized[..., None]


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    """Encode as JPEG and write it atomically."""
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    if not ok:
        raise OSError(f"could not encode {path}")
    write_atomically(path, encoded.tobytes())
