"""ELA tamper/morph check: ELA + wavelet residual -> CNN -> P(manipulated) against a threshold.

The threshold is the manifest's (the validation EER point of the synthetic tampering set). With
an output folder the ELA heat map is written for the operator or engineer. The map is computed on
the capture as the check receives it: `kiosk forensics` gives a copy of at most [input]
work_megapixels (docs/input.md), which is not scale-safe for ELA (resampling blurs the 8x8 JPEG
grid) but keeps memory bounded; the model was trained on 192-512 px crops anyway.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiosk.config import Config
from kiosk.contract.errors import ModelError
from kiosk.contract.fileio import write_atomically
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.ela_features import ela_map, heat_map_png, noise_residual, stack_maps
from kiosk.runtime.models.fusion import sigmoid
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.tflite_io import Model

MODEL_NAME = "tamper_ela"


class ElaCheck:
    key = "ela"
    needs_face = False

    def __init__(self, model: Model, threshold: float, quality: int) -> None:
        self.model = model
        self.threshold = threshold
        self.quality = quality

    def score(self, rgb: np.ndarray) -> tuple[float, np.ndarray]:
        """(P(manipulated), full-resolution ELA map); raises InputError for unusable images."""
        ela = ela_map(rgb, self.quality)
        features = stack_maps(ela, noise_residual(rgb)).astype(np.float32)[None]
        logit = float(self.model(features).reshape(-1)[0])
        return sigmoid(logit), ela

    def run(self, capture: Capture, artifacts: Artifacts) -> dict[str, Any]:
        score, ela = self.score(capture.rgb)
        if (path := artifacts.path("ela.png")) is not None:
            write_atomically(path, heat_map_png(ela))
        return {
            "score": round(score, 4),
            "threshold": round(self.threshold, 4),
            "flagged": score >= self.threshold,
        }


def make_ela_check(registry: ModelRegistry, config: Config) -> ElaCheck | None:
    if MODEL_NAME not in registry.entries:
        return None
    entry = registry.entry(MODEL_NAME)
    # The re-save quality is the model's (its manifest entry); the config may only repeat it.
    # Checked here too: a reloaded bundle may have been trained at another quality.
    quality = entry.extra.get("ela_quality")
    configured = config.forensics.ela_quality
    if entry.threshold is None or type(quality) is not int or configured not in (None, quality):
        raise ModelError(
            f"model {MODEL_NAME!r} was trained with ELA quality {quality} and threshold "
            f"{entry.threshold}; [forensics] ela_quality = {configured}: delete that line (the "
            "model's quality is used) or deploy a bundle whose entry states an integer "
            "ela_quality and a threshold"
        )
    model = Model(registry.interpreter(MODEL_NAME, num_threads=config.models.num_threads))
    return ElaCheck(model, entry.threshold, quality)
