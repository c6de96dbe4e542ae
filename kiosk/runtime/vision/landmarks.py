"""dlib 68-point landmarks predicted inside the MTCNN box.

The model file comes from the config, else from the `face-recognition-models` package, else from
Debian/Raspberry Pi OS's `libdlib-data` (/usr/share/dlib). dlib objects stay private here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from kiosk.config import DEFAULT_BOX_SCALE
from kiosk.contract.errors import ModelError
from kiosk.runtime.vision.types import Box, Landmarks

STOCK_MODEL = "shape_predictor_68_face_landmarks.dat"
SYSTEM_DIRS = (Path("/usr/share/dlib"),)


def find_model(configured: str | Path | None = None) -> Path:
    """Path of the 68-point model: the configured one, or the first stock copy found."""
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise ModelError(f"landmark model {path} (from the config) does not exist")
        return path
    candidates = []
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "models" / STOCK_MODEL)
    candidates += [directory / STOCK_MODEL for directory in SYSTEM_DIRS]
    for path in candidates:
        if path.is_file():
            return path
    raise ModelError(
        "dlib 68-point landmark model not found; install it with `pip install "
        "face-recognition-models` or `apt install libdlib-data`, or set [landmarks] model in "
        f"the config (looked in: {', '.join(str(p) for p in candidates)})"
    )


class LandmarkPredictor:
    """`predict(gray, box)` -> Landmarks. `box_scale` enlarges the detector box about its centre
    so it matches the box geometry the predictor was trained on: the model's own
    (kiosk.config.model_box_scale; None: DEFAULT_BOX_SCALE, the MTCNN box as it is)."""

    def __init__(self, model_path: Path, box_scale: float | None = None) -> None:
        import dlib

        try:
            self._predictor = dlib.shape_predictor(str(model_path))
        except RuntimeError as exc:
            raise ModelError(f"landmark model {model_path} cannot be loaded: {exc}") from exc
        self._dlib = dlib
        self.model_path = model_path
        self.box_scale = DEFAULT_BOX_SCALE if box_scale is None else box_scale

    @classmethod
    def default(
        cls, configured: str | Path | None = None, box_scale: float | None = None
    ) -> LandmarkPredictor:
        return cls(find_model(configured), box_scale=box_scale)

    def predict(self, image: np.ndarray, box: Box) -> Landmarks:
        """68 points for the face in `box`; `image` is grayscale or RGB uint8."""
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half_w, half_h = (x1 - x0) * self.box_scale / 2, (y1 - y0) * self.box_scale / 2
        rect = self._dlib.rectangle(
            round(cx - half_w), round(cy - half_h), round(cx + half_w), round(cy + half_h)
        )
        shape = self._predictor(np.ascontiguousarray(image), rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        return Landmarks(points=points)
