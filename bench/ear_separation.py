"""Does a landmark model see closed eyes? Eye aspect ratio as a closed-eye score, per model.

    .venv/bin/python bench/ear_separation.py [extra_model.dat ...]

YuNet boxes (the kiosk's detector) on test-split faces of `eyes_closed_faces/` (CEW, closed) and
`faces68_ytf/` (YouTube Faces, open), neither in 300-W, so no landmark model has seen them.
Prints the EER of -EAR (mean of both eyes) for the stock dlib model, the bundle's
`shape_predictor_yunet.npz` and any extra model given.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_curve

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kiosk.config import DetectorConfig  # noqa: E402
from kiosk.runtime.models.registry import ModelRegistry  # noqa: E402
from kiosk.runtime.vision.detectors import make_detector  # noqa: E402
from kiosk.runtime.vision.landmarks import LandmarkPredictor, find_model  # noqa: E402
from training import splits  # noqa: E402
from training.geometry import eye_aspect_ratio  # noqa: E402
from training.landmarks import _load_padded  # noqa: E402
from training.paths import MODELS, data_root  # noqa: E402

PER_SET = 150


def test_faces(root: Path, detector, dataset: str, pattern: str) -> list[tuple[np.ndarray, tuple]]:
    """(grey padded photo, box) of up to PER_SET seeded test-split faces found alone."""
    paths = [
        p
        for p in sorted((root / dataset).glob(pattern))
        if splits.split_of(dataset, p.relative_to(root / dataset).as_posix()) == "test"
    ]
    random.Random(7).shuffle(paths)
    found = []
    for path in paths[:PER_SET]:
        loaded = _load_padded(path)
        if loaded is None:
            continue
        faces = detector.detect(loaded[0])
        if len(faces) == 1:
            found.append((cv2.cvtColor(loaded[0], cv2.COLOR_RGB2GRAY), faces[0].box))
    return found


def eer(closed: np.ndarray, opened: np.ndarray) -> float:
    labels = np.r_[np.ones(len(closed)), np.zeros(len(opened))]
    fpr, tpr, _ = roc_curve(labels, np.r_[closed, opened])
    i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    return float((fpr[i] + 1 - tpr[i]) / 2)


def closed_ear(model: LandmarkPredictor, faces: list) -> np.ndarray:
    """-EAR (mean of both eyes) per face: higher = more closed."""
    points = [model.predict(gray, box).points for gray, box in faces]
    return -np.array(
        [(eye_aspect_ratio(p[36:42]) + eye_aspect_ratio(p[42:48])) / 2 for p in points]
    )


def main() -> None:
    root = data_root(None)
    detector = make_detector("yunet", ModelRegistry(MODELS), DetectorConfig())
    models = {
        "stock dlib": LandmarkPredictor(find_model()),
        "shape_predictor_yunet (bundle)": LandmarkPredictor(MODELS / "shape_predictor_yunet.npz"),
    }
    models |= {path: LandmarkPredictor(Path(path)) for path in sys.argv[1:]}
    closed = test_faces(root, detector, "eyes_closed_faces", "closed/*.jpg")
    opened = test_faces(root, detector, "faces68_ytf", "*/*.jpg")
    print(f"{len(closed)} CEW closed vs {len(opened)} YouTube open test faces, YuNet boxes\n")
    print("| landmark model | EER of -EAR |\n|---|---|")
    for name, model in models.items():
        closed_score, open_score = (closed_ear(model, faces) for faces in (closed, opened))
        print(f"| {name} | {100 * eer(closed_score, open_score):.1f} % |")


if __name__ == "__main__":
    main()
