import hashlib
import json
import shutil

import pytest

from kiosk.errors import ModelError
from kiosk.registry import ModelRegistry
from tests.conftest import REPO


@pytest.fixture()
def bundle(tmp_path):
    """A copy of the shipped models directory that tests may damage."""
    target = tmp_path / "models"
    shutil.copytree(REPO / "models", target)
    return target


def test_shipped_manifest_verifies_every_model():
    registry = ModelRegistry(REPO / "models")
    for name in registry.entries:
        content = registry.verified_bytes(name)
        assert hashlib.sha256(content).hexdigest() == registry.entry(name).sha256
    assert {"mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "eyes_closed", "mouth_open", "veil"} <= set(
        registry.entries
    )


def test_missing_manifest(tmp_path):
    with pytest.raises(ModelError, match="no model manifest"):
        ModelRegistry(tmp_path)


def test_missing_model_file(bundle):
    (bundle / "veil.tflite").unlink()
    registry = ModelRegistry(bundle)
    with pytest.raises(ModelError, match="missing or unreadable"):
        registry.verified_bytes("veil")


def test_tampered_model_file(bundle):
    path = bundle / "eyes_closed.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the manifest"):
        ModelRegistry(bundle).interpreter("eyes_closed")


def test_unknown_model_and_malformed_manifest(bundle):
    with pytest.raises(ModelError, match="not in"):
        ModelRegistry(bundle).entry("nope")
    (bundle / "manifest.json").write_text(json.dumps({"models": {"x": {"file": "x"}}}))
    with pytest.raises(ModelError, match="malformed"):
        ModelRegistry(bundle)
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        ModelRegistry(bundle)


def test_pipeline_refuses_tampered_bundle(bundle, tmp_path):
    from kiosk.cli import main

    (bundle / "mouth_open.tflite").write_bytes(b"\0" * 64)
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[models]\ndir = "{bundle}"\n')
    assert main(["--config", str(config), "check", str(tmp_path)]) == 2


def test_listed_landmark_model_is_hash_checked(bundle, tmp_path, capsys):
    from kiosk.cli import main

    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'[models]\ndir = "{bundle}"\n[landmarks]\nmodel = "{bundle}/shape_predictor_mtcnn.dat"\n'
    )
    frames = tmp_path / "frames"
    frames.mkdir()
    assert main(["--config", str(config), "check", str(frames)]) == 0  # intact model, no frames
    data = bytearray((bundle / "shape_predictor_mtcnn.dat").read_bytes())
    data[1000] ^= 0x01  # still a loadable dlib file, but not the shipped one
    (bundle / "shape_predictor_mtcnn.dat").write_bytes(bytes(data))
    assert main(["--config", str(config), "check", str(frames)]) == 2
    assert "does not match the manifest" in capsys.readouterr().err
