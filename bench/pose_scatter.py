"""How far does head pose from predicted landmarks stray from pose from hand landmarks?

    .venv/bin/python bench/pose_scatter.py [--limit 60]

faces68 val+test faces (300-W hand landmarks), each detector with its paired landmark model and
with the stock dlib model: yaw and pitch from `kiosk.runtime.checks.pose.head_pose` on the
predicted points minus the same on the hand points (mean = bias, s.d. = scatter). No true head
pose is known here, so this isolates what the landmark model adds to the generic-3D-face error.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kiosk.config import DetectorConfig  # noqa: E402
from kiosk.contract.models import landmark_model_name  # noqa: E402
from kiosk.runtime.checks.pose import head_pose  # noqa: E402
from kiosk.runtime.models.registry import ModelRegistry  # noqa: E402
from kiosk.runtime.vision.detectors import make_detector  # noqa: E402
from kiosk.runtime.vision.landmarks import LandmarkPredictor, find_model  # noqa: E402
from kiosk.runtime.vision.types import Landmarks  # noqa: E402
from training import landmarks  # noqa: E402
from training.paths import MODELS, data_root  # noqa: E402


def pose(gray: np.ndarray, points: np.ndarray) -> np.ndarray:
    analysis = types.SimpleNamespace(
        gray=gray, landmarks=Landmarks(points=points.astype(np.float32))
    )
    return np.array(head_pose(analysis))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60, help="photos per split")
    args = parser.parse_args()
    root, registry = data_root(None), ModelRegistry(MODELS)
    print("| detector | landmark model | faces | yaw bias / s.d. | pitch bias / s.d. |")
    print("|---|---|---|---|---|")
    for backend in ("yunet", "mtcnn"):
        detector = make_detector(backend, registry, DetectorConfig())
        samples, _ = landmarks.load_samples(root, detector, args.limit)
        faces = [s for s in samples if s.split in ("val", "test")]
        hand = np.array([pose(s.gray, s.truth) for s in faces])
        paired = MODELS / f"{landmark_model_name(backend)}.npz"
        for name, model in (("stock", find_model()), (paired.name, paired)):
            predictor = LandmarkPredictor(model)
            found = np.array([pose(s.gray, predictor.predict(s.gray, s.box).points) for s in faces])
            d = found - hand
            print(
                f"| {backend} | {name} | {len(faces)} | {d[:, 0].mean():+.1f}° / {d[:, 0].std():.1f}° "
                f"| {d[:, 1].mean():+.1f}° / {d[:, 1].std():.1f}° |"
            )


if __name__ == "__main__":
    main()
