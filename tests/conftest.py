"""Shared fixtures: the offline test face (skimage's astronaut) and scenes built from it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.paths import configured_data_root

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = configured_data_root()
DEVICE_MODEL = Path("/proc/device-tree/model")


def on_device() -> bool:
    """A Raspberry Pi (its device-tree model says so) or `IDKIOSK_DEVICE=1`."""
    if os.environ.get("IDKIOSK_DEVICE") == "1":
        return True
    try:
        return "raspberry pi" in DEVICE_MODEL.read_text(errors="replace").lower()
    except OSError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `device` need the kiosk's hardware: skipped anywhere else."""
    if on_device():
        return
    skip = pytest.mark.skip(reason="needs a Raspberry Pi (or IDKIOSK_DEVICE=1)")
    for item in items:
        if "device" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # 512x512 RGB, one frontal face ~110 px wide


@pytest.fixture(scope="session")
def two_faces(astronaut: np.ndarray) -> np.ndarray:
    return np.hstack([astronaut, astronaut[:, ::-1]])


@pytest.fixture(scope="session")
def small_face(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut as shipped: her face box is ~83 px wide, under the 100 px gate."""
    return astronaut


@pytest.fixture(scope="session")
def portrait(astronaut: np.ndarray) -> np.ndarray:
    """A 640x480 kiosk-like frame: the astronaut at 1.6x, face box ~135 px."""
    big = cv2.resize(astronaut, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(big[:480, 40:680])


@pytest.fixture(scope="session")
def no_face() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 6)


def save_rgb(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def pipeline():
    from kiosk.config import load_config
    from kiosk.runtime.pipeline import CompliancePipeline

    return CompliancePipeline(load_config())


def data_root_or_skip() -> Path:
    if not DATA_ROOT.is_dir():
        pytest.skip(f"shared datasets not found at {DATA_ROOT}")
    return DATA_ROOT


def bundle_without(folder: Path, *names: str) -> Path:
    """A copy of the shipped bundle in `folder` minus the models `names` (an empty manifest is no
    longer valid, so tests that need "model not installed" drop just that one)."""
    manifest = json.loads((REPO / "models" / "manifest.json").read_text())
    kept = {k: v for k, v in manifest["models"].items() if k not in names}
    for entry in kept.values():
        shutil.copy(REPO / "models" / entry["file"], folder / entry["file"])
    (folder / "manifest.json").write_text(json.dumps({**manifest, "models": kept}))
    return folder
