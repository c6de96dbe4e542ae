"""dlib 68-point landmarks predicted inside the detector's box (the mean of a few fits from the
box moved by about a pixel, so the points do not follow the detector's jitter).

The model file comes from the config, else the bundle's model trained on the configured
detector's boxes (`shape_predictor_<backend>`), else the stock model from the
`face-recognition-models` package, else Debian/Raspberry Pi OS's `libdlib-data`
(/usr/share/dlib). The bundle's models are dlib's trees exported as arrays (.npz), evaluated
by kiosk/runtime/vision/forest.py with dlib's very results and without dlib's ~0.1 s parse; a
dlib .dat (the stock model, a configured one) runs in dlib. dlib objects stay private here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from kiosk.config import DEFAULT_BOX_SCALE, Config, model_box_scale
from kiosk.contract.errors import ModelError
from kiosk.contract.models import landmark_model_name
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.forest import RegressionForest
from kiosk.runtime.vision.types import Box, Landmarks

STOCK_MODEL = "shape_predictor_68_face_landmarks.dat"
SYSTEM_DIRS = (Path("/usr/share/dlib"),)
# dlib's fit follows the box it starts from (and returns whole pixels): a detector box that
# jitters by a pixel between two frames of a still face moves the points, and head pose and
# framing near their limits with them. The fit is the mean of fits from the box moved by these
# shares of its width and height (about a pixel at a kiosk's face size), which halves that
# jitter (docs/performance.md, "Tracking between frames").
FIT_JITTER = 0.005
FIT_OFFSETS = tuple((sx * FIT_JITTER, sy * FIT_JITTER) for sx in (-1, 1) for sy in (-1, 1))


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

    def __init__(
        self, model_path: Path, box_scale: float | None = None, data: bytes | None = None
    ) -> None:
        """`data`: the model file's bytes as the registry read and hash-checked them, loaded
        instead of opening the path again, so what was verified is what runs (dlib's pickle
        state is a .dat file's content). A `.npz` holds the exported arrays (forest.py)."""
        self._forest: RegressionForest | None = None
        if model_path.suffix == ".npz":
            try:
                self._forest = RegressionForest.from_bytes(
                    model_path.read_bytes() if data is None else data
                )
            except ModelError as exc:
                raise ModelError(f"landmark model {model_path} cannot be loaded: {exc}") from exc
        else:
            import dlib

            try:
                if data is None:
                    self._predictor = dlib.shape_predictor(str(model_path))
                else:
                    self._predictor = dlib.shape_predictor.__new__(dlib.shape_predictor)
                    self._predictor.__setstate__((data,))
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
        """68 points for the face in `box`; `image` is grayscale or RGB uint8. The mean of the
        fits started from the box moved by FIT_OFFSETS (see there)."""
        x0, y0, x1, y1 = box
        width, height = (x1 - x0) * self.box_scale, (y1 - y0) * self.box_scale
        image = np.ascontiguousarray(image)
        rects = []
        for dx, dy in FIT_OFFSETS:
            cx, cy = (x0 + x1) / 2 + dx * width, (y0 + y1) / 2 + dy * height
            rects.append(
                (
                    round(cx - width / 2),
                    round(cy - height / 2),
                    round(cx + width / 2),
                    round(cy + height / 2),
                )
            )
        if self._forest is not None:
            fits = self._forest.fit(image, np.array(rects))
        else:
            fits = np.array(
                [
                    [(p.x, p.y) for p in self._predictor(image, self._dlib.rectangle(*r)).parts()]
                    for r in rects
                ]
            )
        return Landmarks(points=np.mean(fits, axis=0).astype(np.float32))


def landmark_predictor(
    config: Config, registry: ModelRegistry, backend: str | None = None
) -> LandmarkPredictor:
    """The predictor the kiosk uses with detector `backend` (default: the configured one):
    [landmarks] model when set, else the bundle's model trained on that detector's boxes, else
    the stock model. A model listed in the bundle is hash-checked like every other model file;
    its box scale is its manifest entry's, never a user's."""
    if config.landmarks.model:
        path = find_model(config.landmarks.model)
        scale = config.landmarks.box_scale or model_box_scale(registry.entries, config)
    else:
        name = landmark_model_name(backend or config.detector.backend)
        entry = registry.entries.get(name)
        path = registry.models_dir / entry.file if entry else find_model()
        scale = float(entry.extra.get("box_scale", DEFAULT_BOX_SCALE)) if entry else None
    data = next(
        (
            registry.verified_bytes(name)
            for name, entry in registry.entries.items()
            if (registry.models_dir / entry.file).resolve() == path.resolve()
        ),
        None,
    )
    return LandmarkPredictor(path, box_scale=scale, data=data)
