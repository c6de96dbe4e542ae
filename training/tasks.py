"""The three compliance classifiers: what each sees, which network, and its manifest name."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str  # crops file in the work dir
    model_name: str  # manifest key, also the kiosk check name
    architecture: str
    size: int
    positive: str  # what a score of 1 means
    epochs: int
    batch_size: int
    learning_rate: float


TASKS = {
    "eyes": Task("eyes", "eyes_closed", "SqueezeMiniVGG", 56, "eye closed", 16, 64, 2e-3),
    "mouth": Task("mouth", "mouth_open", "SqueezeMiniVGG", 72, "mouth open", 20, 32, 2e-3),
    "veil": Task("veil", "veil", "SqueezeVGG", 128, "face covered", 5, 32, 2e-3),
}
