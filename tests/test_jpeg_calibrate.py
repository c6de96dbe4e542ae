"""`kiosk calibrate`: a camera's own JPEG-history threshold, stored and then used by the check."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.cli import calibrate as calibrate_cli
from kiosk.cli import main
from kiosk.config import load_config
from kiosk.contract.errors import InputError
from kiosk.runtime.forensics.calibration import threshold_for
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.jpeg import make_jpeg_check
from kiosk.runtime.forensics.jpeg_grid import JpegCombCheck
from kiosk.runtime.models.registry import ModelRegistry
from tests.conftest import REPO


def test_threshold_flags_at_most_the_allowed_share() -> None:
    scores = np.linspace(0.1, 0.6, 200)
    threshold = threshold_for(scores, 0.01)
    assert (scores >= threshold).sum() == 2
    with pytest.raises(InputError, match=r"cannot measure a 1\.0% false-alarm rate"):
        threshold_for(scores[:50], 0.01)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(
        f'[models]\ndir = "{REPO / "models"}"\n'
        f'[forensics]\njpeg_calibration = "{tmp_path / "cal.json"}"\n'
    )
    return path


def _frames(folder: Path, astronaut: np.ndarray, count: int, suffix: str = ".png") -> Path:
    folder.mkdir()
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    rng = np.random.default_rng(0)
    for index in range(count):
        y, x = rng.integers(0, 512 - 128, 2)
        crop = gray[y : y + 128, x : x + 128].astype(np.float32) + rng.normal(0, 2, (128, 128))
        cv2.imwrite(str(folder / f"{index:03d}{suffix}"), np.clip(crop, 0, 255).astype(np.uint8))
    return folder


def test_calibrate_stores_a_threshold_the_check_then_uses(tmp_path, astronaut, capsys) -> None:
    config_path = _config(tmp_path)
    frames = _frames(tmp_path / "frames", astronaut, 50)
    code = main(
        [
            "--config",
            str(config_path),
            "calibrate",
            str(frames),
            "--frames",
            "50",
            "--false-alarms",
            "0.04",
            "--json",
        ]
    )
    assert code == 0
    stored = json.loads(capsys.readouterr().out)
    assert stored["frames"] == 50 and 0.01 <= stored["threshold"] <= 0.99
    saved = json.loads((tmp_path / "cal.json").read_text())
    assert saved["threshold"] == stored["threshold"]
    config = load_config(config_path)
    check = make_jpeg_check(ModelRegistry(config.models_dir), config)
    assert check is not None and check.threshold == stored["threshold"]
    assert check.threshold_source.startswith("camera calibration")


def test_jpeg_sources_are_refused(tmp_path, astronaut, capsys, monkeypatch) -> None:
    config_path = _config(tmp_path)
    frames = _frames(tmp_path / "jpegs", astronaut, 3, ".jpg")
    assert main(["--config", str(config_path), "calibrate", str(frames)]) == 2
    assert "JPEG check not meaningful" in capsys.readouterr().err
    monkeypatch.setattr(calibrate_cli, "usb_fourcc", lambda index: "MJPG")
    with pytest.raises(InputError, match="JPEG check not meaningful: camera:1 delivers MJPEG"):
        calibrate_cli.refuse_jpeg_sources("camera:1")


def test_dc_comb_finds_a_jpeg_past_on_any_grid(astronaut: np.ndarray) -> None:
    """A never-JPEG frame (the astronaut halved and given sensor noise, which erases any past
    comb) is not flagged; its quality-90 JPEG is, with DC step 3, also when cropped off the
    8-px grid."""
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA).astype(float)
    noisy = np.clip(small + np.random.default_rng(1).normal(0, 2, small.shape), 0, 255)
    frame = noisy.round().astype(np.uint8)
    check = JpegCombCheck()
    assert not check.run(Capture(frame), Artifacts())["flagged"]
    _, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    decoded = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    for image, offset in ((decoded, [0, 0]), (decoded[3:, 5:], [3, 5])):
        record = check.run(Capture(np.ascontiguousarray(image)), Artifacts())
        assert record["flagged"] and record["step"] == 3 and record["offset"] == offset
