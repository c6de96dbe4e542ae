import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest

from kiosk.config import load_config
from kiosk.contract.errors import ModelError
from kiosk.contract.manifest import generate_key, sign_bundle
from kiosk.runtime.models.registry import ModelRegistry
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
    with pytest.raises(ModelError, match=r"models\.x\.sha256: Field required"):
        ModelRegistry(bundle)
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        ModelRegistry(bundle)


def test_nan_threshold_never_reaches_a_check(bundle):
    """`score >= NaN` is never true: a NaN threshold used to turn the eyes check off."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["models"]["eyes_closed"]["threshold"] = float("nan")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"eyes_closed\.threshold: Input should be a finite"):
        ModelRegistry(bundle)


def test_configured_key_refuses_unsigned_and_foreign_bundles(bundle, tmp_path):
    private, public = generate_key(tmp_path / "office")
    _, stranger = generate_key(tmp_path / "stranger")
    with pytest.raises(ModelError, match="not signed"):
        ModelRegistry(bundle, public_key=public)
    sign_bundle(bundle, private)
    registry = ModelRegistry(bundle, public_key=public)
    assert registry.signature == "verified"
    with pytest.raises(ModelError, match="signed with another key"):
        ModelRegistry(bundle, public_key=stranger)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["models"]["veil"]["architecture"] += " (edited)"
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    with pytest.raises(ModelError, match="changed after signing"):
        ModelRegistry(bundle, public_key=public)


def test_without_a_key_the_bundle_loads_unchecked_with_one_warning(bundle, caplog):
    with caplog.at_level(logging.WARNING):
        first = ModelRegistry(bundle)
        ModelRegistry(bundle)
    assert first.signature == "unchecked"
    warnings = [r for r in caplog.records if "without a signature check" in r.getMessage()]
    assert len(warnings) == 1


def test_public_key_setting(tmp_path):
    config = tmp_path / "kiosk.toml"
    config.write_text('[models]\npublic_key = "/etc/kiosk/models.pub"\n')
    assert load_config(config).models.public_key_path == Path("/etc/kiosk/models.pub")
    assert load_config().models.public_key_path is None


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
        f'[models]\ndir = "{bundle}"\n[landmarks]\nmodel = "{bundle}/shape_predictor_mtcnn.npz"\n'
    )
    frames = tmp_path / "frames"
    frames.mkdir()
    assert main(["--config", str(config), "check", str(frames)]) == 0  # intact model, no frames
    data = bytearray((bundle / "shape_predictor_mtcnn.npz").read_bytes())
    data[1000] ^= 0x01  # a byte of the arrays changed: not the shipped model
    (bundle / "shape_predictor_mtcnn.npz").write_bytes(bytes(data))
    assert main(["--config", str(config), "check", str(frames)]) == 2
    assert "does not match the manifest" in capsys.readouterr().err


def _config(tmp_path: Path, bundle: Path, extra: str = "") -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(f'[models]\ndir = "{bundle}"\n{extra}')
    return path


@pytest.mark.parametrize("backend", ["mtcnn", "yunet"])
def test_each_detector_gets_the_landmark_model_trained_on_its_boxes(bundle, tmp_path, backend):
    from kiosk.runtime.vision.landmarks import landmark_predictor

    config = load_config(_config(tmp_path, bundle, f'[detector]\nbackend = "{backend}"\n'))
    registry = ModelRegistry(bundle)
    if f"shape_predictor_{backend}" not in registry.entries:
        pytest.skip(f"this bundle ships no landmark model for {backend}")
    predictor = landmark_predictor(config, registry)
    assert predictor.model_path.name == f"shape_predictor_{backend}.npz"


def test_stock_landmark_model_when_the_bundle_has_none_for_the_detector(bundle, tmp_path):
    from kiosk.contract.manifest import load_manifest
    from kiosk.runtime.vision.landmarks import STOCK_MODEL, landmark_predictor

    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in [n for n in manifest["models"] if n.startswith("shape_predictor_")]:
        (bundle / manifest["models"].pop(name)["file"]).unlink()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert not any(n.startswith("shape_predictor_") for n in load_manifest(bundle).models)
    predictor = landmark_predictor(load_config(_config(tmp_path, bundle)), ModelRegistry(bundle))
    assert predictor.model_path.name == STOCK_MODEL


def test_a_configured_landmark_model_wins_over_the_paired_one(bundle, tmp_path):
    from kiosk.runtime.vision.landmarks import landmark_predictor

    extra = f'[detector]\nbackend = "yunet"\n[landmarks]\nmodel = "{bundle}/shape_predictor_mtcnn.npz"\n'
    config = load_config(_config(tmp_path, bundle, extra))
    predictor = landmark_predictor(config, ModelRegistry(bundle))
    assert predictor.model_path.name == "shape_predictor_mtcnn.npz"


def test_the_landmark_model_that_runs_is_the_one_that_was_hash_checked(
    bundle, tmp_path, monkeypatch
):
    """A file swapped on disk after its check is not what runs: the checked bytes are."""
    import numpy as np

    from kiosk.runtime.vision.landmarks import LandmarkPredictor, landmark_predictor

    config = load_config(_config(tmp_path, bundle, '[detector]\nbackend = "yunet"\n'))
    registry = ModelRegistry(bundle)
    model = bundle / registry.entry("shape_predictor_yunet").file
    reference = LandmarkPredictor(model)
    checked = registry.verified_bytes

    def check_then_swap(name: str) -> bytes:
        content = checked(name)
        if name == "shape_predictor_yunet":
            model.write_bytes(b"swapped after the check")
        return content

    monkeypatch.setattr(registry, "verified_bytes", check_then_swap)
    predictor = landmark_predictor(config, registry)
    assert model.read_bytes() == b"swapped after the check"
    gray = np.random.default_rng(0).integers(0, 256, (160, 160), dtype=np.uint8)
    box = (30.0, 30.0, 130.0, 130.0)
    assert np.array_equal(predictor.predict(gray, box).points, reference.predict(gray, box).points)
    with pytest.raises(ModelError, match="cannot be loaded"):
        LandmarkPredictor(model, data=b"not a landmark model")
