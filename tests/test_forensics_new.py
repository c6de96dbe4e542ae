"""The splice check: its features, its numpy tree evaluator and, with the shipped model, that a
region with another compression history scores above the rest of the picture."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from kiosk.contract.errors import InputError
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.splice import MODEL_NAME, SpliceCheck, pool, window
from kiosk.runtime.forensics.splice_features import TILE, tile_features
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.trees import Trees
from tests.conftest import data_root_or_skip
from training.tamper.splice import to_arrays

MODELS = Path(__file__).resolve().parent.parent / "models"


def _jpeg(gray: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


def test_features_are_per_tile_and_refuse_tiny_images(astronaut: np.ndarray) -> None:
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    features = tile_features(gray)
    assert features.shape[:2] == (gray.shape[0] // TILE, gray.shape[1] // TILE)
    assert np.isfinite(features).all()
    with pytest.raises(InputError, match="too small"):
        tile_features(gray[:64, :64])


def test_ghost_feature_marks_a_region_saved_at_low_quality(astronaut: np.ndarray) -> None:
    """A quarter saved at quality 50 in a never-JPEG picture: its tiles' ghost at q=50 (first
    feature, log squared difference) is far below the untouched tiles'."""
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    spliced = gray.copy()
    spliced[:256, :256] = _jpeg(gray, 50)[:256, :256]
    ghost = tile_features(spliced)[..., 0]
    assert ghost[:8, :8].mean() < ghost[8:, 8:].mean() - 1.0


def test_numpy_trees_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int)
    model = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x, y)
    trees = Trees(to_arrays(model, 5))
    assert np.allclose(trees.predict(x), model.predict_proba(x)[:, 1], atol=1e-5)


def test_window_keeps_the_jpeg_grid_phase() -> None:
    rows, cols = window(3000, 1000, limit=2048)
    assert rows.start % 8 == 0 and rows.stop - rows.start == 2048
    assert cols == slice(0, 1000)


def test_pooling_is_the_highest_tile() -> None:
    tiles = np.zeros((10, 10))
    tiles[5, 5] = 0.7
    assert pool(tiles) == pytest.approx(0.7)


@pytest.fixture(scope="module")
def check() -> SpliceCheck:
    registry = ModelRegistry(MODELS)
    if MODEL_NAME not in registry.entries:
        pytest.skip("splice_jpeg is not in models/manifest.json")
    entry = registry.entry(MODEL_NAME)
    return SpliceCheck(Trees.from_bytes(registry.verified_bytes(MODEL_NAME)), entry.threshold)


def test_shipped_model_finds_a_pasted_region(check: SpliceCheck, tmp_path: Path) -> None:
    """A never-JPEG host (a held-out Kodak picture) with a 160-px square pasted off the 8-px
    grid from a quality-60 JPEG, saved losslessly: the highest tile lies on the paste and the
    pasted tiles score well above the rest; the record has its keys and the heat map is written.
    (The untouched host's own highest tile is already near the threshold: see the report's
    false-alarm rate.)"""
    root = data_root_or_skip() / "uncompressed" / "kodak"
    host = cv2.imread(str(root / "kodim05.png"), cv2.IMREAD_GRAYSCALE)
    donor = _jpeg(cv2.imread(str(root / "kodim23.png"), cv2.IMREAD_GRAYSCALE), 60)
    spliced = host.copy()
    spliced[131:291, 253:413] = donor[100:260, 100:260]
    tiles = check.tile_scores(spliced)
    around = np.zeros(tiles.shape, bool)
    around[4:10, 7:14] = True  # every tile the paste touches
    assert around[np.unravel_index(tiles.argmax(), tiles.shape)]
    assert tiles[5:8, 9:12].mean() > np.median(tiles[~around]) + 0.25
    rgb = cv2.cvtColor(spliced, cv2.COLOR_GRAY2RGB)
    record = check.run(Capture(rgb), Artifacts(tmp_path, "x"))
    assert {"score", "threshold", "flagged", "tiles", "flagged_tiles", "window"} <= record.keys()
    assert record["flagged"] and (tmp_path / "x_splice_heat.png").exists()
