"""Super-resolution check: faces smaller than the token size are upscaled x4 for storage.

The face is cut as a square of FACE_MARGIN x the detector box side, resampled to the model's
128x128 input (native resolution when the box is ~85 px), and its Y channel is super-resolved
by the fidelity-trained (pixel-loss) network, as the mean of the manifest entry's
`self_ensemble` transformed passes (kiosk/contract/models.py; absent: one plain pass); Cb/Cr are
upscaled bicubically, as in the SR literature. The record's `views` says how many passes ran.
The result (512x512) is written as `<stem>_face_sr.png` when an output folder is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np

from kiosk.config import Config
from kiosk.contract.errors import InputError, ModelError
from kiosk.contract.fileio import write_atomically
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.colour import rgb_to_ycbcr, ycbcr_to_rgb
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.tflite_io import Model

MODEL_NAME = "sr_x4"
SCALE = 4
FACE_MARGIN = 1.5  # the crop shows the whole head, as a passport token does
# Geometric self-ensemble (Timofte et al. 2016): the square LR tile under the first n of these
# (quarter turns, mirror) transforms, each output mapped back and averaged. n = 1, 2, 4 or 8:
# 2 adds the mirror, 4 the half turn with and without it, 8 the quarter turns (transposes).
TRANSFORMS = (
    (0, False),
    (0, True),
    (2, False),
    (2, True),
    (1, False),
    (1, True),
    (3, False),
    (3, True),
)


def self_ensemble(run: Callable[[np.ndarray], np.ndarray], tile: np.ndarray, n: int) -> np.ndarray:
    """Mean of run(T(tile)) mapped back by T^-1 over the first n TRANSFORMS; `run` maps a square
    2-D tile to its (larger) square 2-D output."""
    if n not in (1, 2, 4, 8):
        raise ValueError(f"self-ensemble of {n} transforms: 1, 2, 4 or 8")
    total = None
    for turns, mirror in TRANSFORMS[:n]:
        x = np.rot90(tile, turns)
        out = run(np.ascontiguousarray(x[:, ::-1] if mirror else x))
        out = np.rot90(out[:, ::-1] if mirror else out, -turns)
        total = out.astype(np.float32) if total is None else total + out
    return total / n


def face_square(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A square crop centred on the box, side FACE_MARGIN x the box's longer side; outside the
    frame is filled by edge replication."""
    x0, y0, x1, y1 = box
    side = max(round(max(x1 - x0, y1 - y0) * FACE_MARGIN), 2)
    left, top = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2)
    height, width = rgb.shape[:2]
    pad = max(0, -left, -top, left + side - width, top + side - height)
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else rgb
    return padded[top + pad : top + pad + side, left + pad : left + pad + side]


class SrCheck:
    key = "sr"
    needs_face = True

    def __init__(self, model: Model, token_px: int, ensemble: int = 1) -> None:
        self.model = model
        self.token_px = token_px
        self.input_side = model.input_shape[1]
        self.ensemble = ensemble  # self-ensemble size: `ensemble` inferences per face

    def upscale(self, face: np.ndarray) -> np.ndarray:
        """RGB face crop (any size) -> (4 x 128)-px RGB: SR on Y, bicubic on Cb/Cr."""
        side = self.input_side
        shrinking = face.shape[0] > side
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
        small = cv2.resize(face, (side, side), interpolation=interpolation)
        ycbcr = rgb_to_ycbcr(small)
        y = self_ensemble(self._run, ycbcr[..., 0] / 255.0, self.ensemble) * 255.0
        big = cv2.resize(ycbcr, (side * SCALE, side * SCALE), interpolation=cv2.INTER_CUBIC)
        big[..., 0] = y
        return ycbcr_to_rgb(big)

    def _run(self, y: np.ndarray) -> np.ndarray:
        return self.model(y.astype(np.float32)[None, :, :, None])[0, :, :, 0]

    def run(self, capture: Capture, artifacts: Artifacts) -> dict[str, Any]:
        if capture.face is None:
            return {"applied": False, "scale": SCALE, "face_px": None}
        x0, y0, x1, y1 = capture.face
        face_px = max(x1 - x0, y1 - y0) * capture.scale  # the stored capture's pixels
        if face_px <= 0:
            raise InputError(f"empty face box {capture.face}")
        result = {"applied": face_px < self.token_px, "scale": SCALE, "face_px": round(face_px, 1)}
        if not result["applied"]:
            return result
        upscaled = self.upscale(face_square(capture.rgb, capture.face))
        if (path := artifacts.path("face_sr.png")) is not None:
            ok, encoded = cv2.imencode(".png", upscaled[..., ::-1])
            if not ok:
                raise InputError("PNG encoding of the super-resolved face failed")
            write_atomically(path, encoded.tobytes())
        return {**result, "output_px": int(upscaled.shape[0]), "views": self.ensemble}


def entry_ensemble(extra: Mapping[str, Any]) -> int:
    """The sr_x4 entry's self-ensemble size (1 when the entry predates it)."""
    n = extra.get("self_ensemble", 1)
    if type(n) is not int or n not in (1, 2, 4, 8):
        raise ModelError(
            f"manifest entry {MODEL_NAME!r}: self_ensemble must be 1, 2, 4 or 8, got {n!r}; "
            "re-export it with `make sr-export`"
        )
    return int(n)


def make_sr_check(registry: ModelRegistry, config: Config) -> SrCheck | None:
    if MODEL_NAME not in registry.entries:
        return None
    ensemble = entry_ensemble(registry.entries[MODEL_NAME].extra)
    model = Model(registry.interpreter(MODEL_NAME, num_threads=config.models.num_threads))
    return SrCheck(model, config.forensics.sr_token_px, ensemble)
