"""The `mtcnn` PyPI package (Keras/TensorFlow) behind the kiosk's FaceDetector shape.

Kept in training/ because it imports TensorFlow: it is the reference the LiteRT cascade is tested
and benchmarked against, never part of the kiosk runtime.
"""

from __future__ import annotations

import numpy as np

import training.tf_setup  # noqa: F401  (quiet TensorFlow before mtcnn imports it)
from kiosk.runtime.vision.types import Face

_KEYPOINT_ORDER = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class MtcnnReference:
    """`detect(rgb)` -> faces, computed by the `mtcnn` package with its default parameters."""

    def __init__(self, min_face_size: int = 20) -> None:
        from mtcnn import MTCNN

        self._mtcnn = MTCNN()
        self._min_face_size = min_face_size

    def detect(self, rgb: np.ndarray) -> list[Face]:
        results = self._mtcnn.detect_faces(
            rgb, box_format="xyxy", min_face_size=self._min_face_size
        )
        faces = []
        for result in sorted(results, key=lambda r: -r["confidence"]):
            keypoints = np.array([result["keypoints"][k] for k in _KEYPOINT_ORDER], np.float32)
            box = tuple(float(v) for v in result["box"])
            faces.append(Face(box=box, confidence=float(result["confidence"]), keypoints=keypoints))
        return faces
