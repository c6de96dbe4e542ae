"""Token photo cost: the shipped test face in a 12 MP still (4000x3000) and in a 1280x960 frame
(where the face is enlarged 2x or more and SR runs), per format; 1 thread, median of --runs.

Landmarks are predicted on the still inside the face box rescaled from a 640x480 preview, as the
capture step does; "token" is make_token (level, crop, scale, encode the print JPEG and the ISO
Token Frontal image).

    .venv/bin/python bench/bench_token.py [--runs 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from kiosk.config import load_config  # noqa: E402
from kiosk.runtime.forensics.sr import make_sr_check  # noqa: E402
from kiosk.runtime.models.registry import ModelRegistry  # noqa: E402
from kiosk.runtime.token.photo import make_token  # noqa: E402
from kiosk.runtime.vision.landmarks import LandmarkPredictor, find_model  # noqa: E402
from kiosk.runtime.vision.mtcnn_lite import MtcnnLite  # noqa: E402
from training.timing import median_ms  # noqa: E402

FACE = REPO / "tests" / "data" / "face_open.jpg"


def scene(width: int, height: int, face_side: int) -> np.ndarray:
    """The test face, `face_side` px, centred a little above the middle of a grey frame."""
    face = cv2.cvtColor(cv2.imread(str(FACE)), cv2.COLOR_BGR2RGB)
    face = cv2.resize(face, (face_side, face_side), interpolation=cv2.INTER_CUBIC)
    frame = np.full((height, width, 3), 128, np.uint8)
    top, left = (height - face_side) // 2, (width - face_side) // 2
    frame[top : top + face_side, left : left + face_side] = face
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    config = load_config()
    registry = ModelRegistry(REPO / "models")
    detector = MtcnnLite(registry, config.detector, num_threads=1)
    predictor = LandmarkPredictor(find_model(config.landmarks.model or None))
    sr = make_sr_check(registry, config)
    cases = [("12 MP still", scene(4000, 3000, 1250)), ("1280x960 frame", scene(1280, 960, 260))]
    print("| still | format | landmarks on still ms | token ms | scale | SR | output |")
    print("|---|---|---:|---:|---:|---|---|")
    for label, still in cases:
        preview = cv2.resize(still, (640, 480), interpolation=cv2.INTER_AREA)
        factor = still.shape[1] / 640
        faces = detector.detect(preview)
        if len(faces) != 1:
            raise SystemExit(f"{label}: expected one face in the preview, found {len(faces)}")
        box = tuple(v * factor for v in faces[0].box)
        landmarks_ms = median_ms(lambda s=still, b=box: predictor.predict(s, b), args.runs)
        landmarks = predictor.predict(still, box)
        for name, fmt in config.token.formats.items():
            token_ms = median_ms(
                lambda s=still, p=landmarks, f=fmt, n=name: make_token(s, p, f, n, sr=sr),
                args.runs,
            )
            token = make_token(still, landmarks, fmt, name, sr=sr)
            geometry = token.geometry
            size = "x".join(str(v) for v in geometry["size_px"])
            print(
                f"| {label} | {name} | {landmarks_ms:.1f} | {token_ms:.1f} | "
                f"{geometry['scale']:.2f} | {'yes' if geometry['super_resolved'] else 'no'} | "
                f"{size} @ {geometry['dpi']} dpi |"
            )


if __name__ == "__main__":
    main()
