"""The three compliance classifiers as training tasks: the model spec they export to (crop, input
shape, architecture, positive class: kiosk/contract/models.py) plus the training schedule."""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.contract.models import COMPLIANCE, ModelSpec


@dataclass(frozen=True)
class Task:
    name: str  # crops file in the work dir
    spec: ModelSpec
    epochs: int
    batch_size: int
    learning_rate: float
    # Share of training crops sent through a low-resolution round trip: the eye model sees
    # faces from 40 px up (YTF, CEW), whose eye crops are upscaled from ~15-25 px.
    lowres_probability: float = 0.3
    # Momentum of an exponential moving average of the weights (None: the raw weights are kept).
    ema_momentum: float | None = None
    # One run per seed; several are averaged into one network (training/ensemble.py).
    seeds: tuple[int, ...] = (7,)
    # (epochs, learning rate) of a second stage from the first stage's best checkpoint.
    continued: tuple[int, float] | None = None

    @property
    def model_name(self) -> str:
        """Manifest key, also the kiosk check name."""
        return self.spec.name

    @property
    def architecture(self) -> str:
        return self.spec.architecture

    @property
    def size(self) -> int:
        return self.spec.input_shape[1]

    @property
    def positive(self) -> str:
        return self.spec.positive


TASKS = {
    # EMA: reports/verdicts/ema_trial.md (won per face on the unseen sources).
    "eyes": Task(
        "eyes", COMPLIANCE["eyes_closed"], 16, 64, 2e-3, lowres_probability=0.5, ema_momentum=0.99
    ),
    # 15 more epochs at 5e-4: docs/verdicts.md, "Fifteen more epochs for the mouth CNN".
    "mouth": Task("mouth", COMPLIANCE["mouth_open"], 20, 32, 2e-3, continued=(15, 5e-4)),
    # The mean of three runs: reports/verdicts/ensemble_trial.md (won per face on unseen sources).
    "veil": Task("veil", COMPLIANCE["veil"], 5, 32, 2e-3, seeds=(7, 8, 9)),
}
