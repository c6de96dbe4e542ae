"""training.landmarks: the retraining code path on a few real faces68 photos, and its helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kiosk.runtime.vision.landmarks import LandmarkPredictor
from kiosk.runtime.vision.mtcnn_lite import MtcnnLite
from training import landmarks, splits
from training.paths import MODELS, configured_data_root

DATA_ROOT = configured_data_root()


def test_mirror_permutation_swaps_sides_and_is_its_own_inverse() -> None:
    mirror = np.array(landmarks.MIRROR)
    assert sorted(mirror) == list(range(68))
    assert (mirror[mirror] == np.arange(68)).all()
    assert mirror[36] == 45 and mirror[48] == 54 and mirror[8] == 8


def test_nme_is_zero_for_exact_points_and_scales_with_the_eye_distance() -> None:
    truth = np.random.default_rng(0).uniform(0, 100, (3, 68, 2))
    truth[:, 36], truth[:, 45] = (10, 50), (50, 50)  # outer eye corners 40 px apart
    assert np.allclose(landmarks.nme(truth, truth), 0)
    assert np.allclose(landmarks.nme(truth + np.array([4.0, 0.0]), truth), 0.1)


def test_ship_rule_needs_both_accuracy_and_size() -> None:
    stock = {"nme_mean": 0.05, "bytes": 100}
    assert landmarks.qualifies({"nme_mean": 0.054, "bytes": 10}, stock)[0]
    assert not landmarks.qualifies({"nme_mean": 0.06, "bytes": 10}, stock)[0]
    assert not landmarks.qualifies({"nme_mean": 0.05, "bytes": 50}, stock)[0]


def test_faces68_photos_are_split_by_photo_key() -> None:
    assert splits.lookup("faces68", "helen_trainset/200506188_1.jpg")[0] == "helen:200506188"
    assert splits.lookup("faces68", "afw/1051618982_1.jpg")[0] == "afw:1051618982"


def test_a_shipped_model_gets_its_manifest_entry_with_the_new_hash(tmp_path: Path) -> None:
    """`make landmarks` used to copy a new model and keep the old sha256 (deploy then refused)."""
    from kiosk.contract.manifest import load_manifest, sha256_file

    models = tmp_path / "models"
    models.mkdir()
    result = {key: 0.05 for key in landmarks.MANIFEST_METRICS}
    metrics = {
        "normalization": "outer eye corners",
        "results": {"retrained": result},
        "detector": "yunet",
    }
    name = landmarks.npz_name("yunet")  # what the kiosk runs: the exported arrays
    for content in (b"first model", b"retrained model"):
        (models / name).write_bytes(content)
        landmarks.register(models, metrics, tmp_path / "reports")
        entry = load_manifest(models).models["shape_predictor_yunet"]
        assert entry.sha256 == sha256_file(models / name)
        assert entry.bytes == len(content)
    assert entry.extra["metrics"]["held_out_test"]["retrained"]["nme_mean"] == 0.05
    assert entry.extra["detector"] == "yunet"


@pytest.mark.slow
@pytest.mark.skipif(
    not (DATA_ROOT / "faces68").is_dir(),
    reason=f"faces68 data not found under {DATA_ROOT} (set IDKIOSK_DATA_ROOT)",
)
def test_training_on_a_few_faces_gives_a_model_that_lands_on_faces(tmp_path: Path) -> None:
    out, reports, models = tmp_path / "out", tmp_path / "reports", tmp_path / "models"
    landmarks.main(
        [
            "--data-root",
            str(DATA_ROOT),
            "--limit",
            "12",
            "--options",
            "tiny",
            "--out-dir",
            str(out),
            "--reports",
            str(reports),
            "--models-dir",
            str(models),
            "--latency-rounds",
            "1",
        ]
    )
    model = out / landmarks.model_name("mtcnn")
    assert model.stat().st_size > 0
    metrics = json.loads((reports / "metrics.json").read_text())
    assert set(metrics["results"]) >= {"stock, raw MTCNN box", "retrained on MTCNN boxes"}
    assert (reports / "README.md").is_file() and (reports / "ced.png").is_file()
    assert metrics["mirror_faces"] > 0
    assert not metrics["ships"] and not models.exists()  # a 5-tree model never qualifies

    samples, _ = landmarks.load_samples(DATA_ROOT, MtcnnLite.from_models_dir(MODELS), limit=2)
    predictor = LandmarkPredictor(model)
    predicted = []
    for sample in samples:
        points = predictor.predict(sample.gray, sample.box).points
        assert np.isfinite(points).all()
        x0, y0, x1, y1 = sample.box
        margin = 0.25 * (x1 - x0)
        assert (points[:, 0] > x0 - margin).all() and (points[:, 0] < x1 + margin).all()
        assert (points[:, 1] > y0 - margin).all() and (points[:, 1] < y1 + margin).all()
        predicted.append(points)
    truth = np.stack([sample.truth for sample in samples])
    assert landmarks.nme(np.stack(predicted), truth).mean() < 0.4  # a rough face shape, not noise
