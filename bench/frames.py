"""The bench clips' frames, shared by bench_pipeline.py, bench_video.py and face_miss.py: the
test faces on a 640x480 canvas and the slow drift an applicant makes settling in."""

from __future__ import annotations

import cv2
import numpy as np

from training.paths import data_root


def kiosk_frames() -> list[np.ndarray]:
    from skimage import data

    from kiosk.runtime.imageio import load_rgb

    faces = [data.astronaut()[0:300, 80:420]]
    root = data_root() / "faces68" / "helen_trainset"
    faces += [load_rgb(p) for p in sorted(root.glob("*.jpg"))[:5]]
    frames = []
    for face in faces:
        canvas = np.full((480, 640, 3), 120, np.uint8)
        scale = 400 / face.shape[0]
        resized = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)[
            :480, :640
        ]
        y, x = (480 - resized.shape[0]) // 2, (640 - resized.shape[1]) // 2
        canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
        frames.append(canvas)
    return frames


def drift(frame: np.ndarray, t: float) -> np.ndarray:
    """`frame` moved by a slow sub-pixel drift and zoom sway at time `t` (frames)."""
    dx, dy = 25 * np.sin(t / 30), 10 * np.sin(t / 23)
    zoom = 1 + 0.02 * np.sin(t / 40)
    matrix = cv2.getRotationMatrix2D((320, 240), 0.0, zoom)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(frame, matrix, (640, 480), borderMode=cv2.BORDER_REPLICATE)


def clip(faces: list[np.ndarray], per_face: int, empty: int = 5) -> list[np.ndarray]:
    """One slow segment per face canvas, `empty` grey frames after each."""
    blank = np.full((480, 640, 3), 120, np.uint8)
    frames = []
    for canvas in faces:
        frames += [drift(canvas, t) for t in range(per_face)]
        frames += [blank] * empty
    return frames
