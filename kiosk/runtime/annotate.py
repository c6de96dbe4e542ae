"""Draw what the pipeline saw: face box, 68 landmarks, the four crops and the check scores."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kiosk.contract.fileio import write_atomically
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
    lines = [
        verdict.decision.upper() + (": " + ", ".join(verdict.reasons) if verdict.reasons else "")
    ]
    lines += [f"{name} {r.score:.3f} / {r.threshold:.3f}" for name, r in verdict.checks.items()]
    if verdict.error:
        lines.append(verdict.error[:80])
    for i, text in enumerate(lines):
        origin = (round(8 * scale), round((24 + 22 * i) * scale))
        cv2.putText(
            canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), thickness + 2
        )
        cv2.putText(
            canvas,
            text,
            origin,
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6 * scale,
            colour if i == 0 else WHITE,
            thickness,
        )
    return canvas


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
