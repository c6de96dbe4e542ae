"""The splice tile CNN: the patches it sees, the shipped model as the kiosk runs it (batches
padded without leaking into the real patches), its fusion with the trees in `kiosk forensics`,
a bundle whose CNN entry lacks its fusion, the Keras import's refusal of weights that do not
reproduce the run's logits, and the committed trial report."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.config import Config
from kiosk.contract.errors import ModelError
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.splice import (
    CNN_MODEL_NAME,
    TREES_LOGIT,
    ImageStage,
    TileCnn,
    cnn_features,
    make_splice_check,
)
from kiosk.runtime.forensics.splice_features import CNN_CONTEXT, TILE, tile_patches
from kiosk.runtime.models.registry import ModelRegistry
from tests.conftest import REPO, bundle_without


@pytest.fixture(scope="module")
def gray(astronaut: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[:200, :230]


def test_patches_are_the_tiles_with_reflected_context(gray: np.ndarray) -> None:
    patches = tile_patches(gray)
    rows, cols = gray.shape[0] // TILE, gray.shape[1] // TILE
    assert patches.shape == (rows * cols, TILE + 2 * CNN_CONTEXT, TILE + 2 * CNN_CONTEXT)
    inner = slice(CNN_CONTEXT, CNN_CONTEXT + TILE)
    for index in (0, cols + 2, rows * cols - 1):
        row, col = divmod(index, cols)
        tile = gray[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE]
        assert (patches[index][inner, inner] == tile).all()
    # the first tile's context above is the plane's rows 1..16 mirrored (numpy "reflect")
    assert (patches[0][CNN_CONTEXT - 1, inner] == gray[1, :TILE]).all()


def test_shipped_cnn_scores_each_tile_alone(gray: np.ndarray) -> None:
    """42 tiles: a batch of 64 padded with zeros. Each tile's logit equals the one it gets in a
    batch filled with copies of itself, so neither padding nor neighbours leak in."""
    cnn = TileCnn((REPO / "models" / f"{CNN_MODEL_NAME}.tflite").read_bytes())
    logits = cnn.logits(gray)
    assert logits.shape == (gray.shape[0] // TILE, gray.shape[1] // TILE)
    patches = tile_patches(gray)
    for index in (0, 17, len(patches) - 1):
        alone = np.repeat(patches[index][None, ..., None], cnn.batch, 0).astype(np.float32)
        assert cnn.model(alone)[0] == pytest.approx(logits.ravel()[index], abs=1e-5)


def test_cnn_features_pool_the_map() -> None:
    logits = np.full((6, 6), -3.0, np.float32)
    logits[2:4, 2:4] = 5.0
    features = cnn_features(logits)
    assert features == {"cnn_top4": 5.0, "cnn_box2": 5.0, "cnn_median": -3.0}


def test_kiosk_splice_record_is_the_fusion_of_trees_and_cnn(
    tmp_path: Path, gray: np.ndarray
) -> None:
    registry = ModelRegistry(REPO / "models")
    check = make_splice_check(registry, Config())
    assert check is not None and check.cnn is not None and check.fusion is not None
    rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    record = check.run(Capture(rgb=rgb), Artifacts(tmp_path))
    assert record["model"] == "trees+cnn" and record["heat_map_model"] == "cnn"
    assert Path(record["heat_map"]).is_file()
    assert {"score", "threshold", "flagged", "trees_score", "cnn_max_tile"} <= record.keys()
    trees_logit = ImageStage(check.trees.arrays).logit(check.tile_scores(gray))
    expected = check.fusion.score(
        {TREES_LOGIT: trees_logit, **cnn_features(check.cnn.logits(gray))}
    )
    assert record["score"] == pytest.approx(expected, abs=1e-6)
    assert record["threshold"] == registry.entry(CNN_MODEL_NAME).threshold


def test_without_the_cnn_the_trees_decide_alone(tmp_path: Path, gray: np.ndarray) -> None:
    check = make_splice_check(ModelRegistry(bundle_without(tmp_path, CNN_MODEL_NAME)), Config())
    assert check is not None and check.cnn is None
    record = check.run(Capture(rgb=cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)), Artifacts(None))
    assert record["model"] == "trees" and "trees_score" not in record


def test_cnn_entry_without_fusion_is_refused(tmp_path: Path) -> None:
    bundle = bundle_without(tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["models"][CNN_MODEL_NAME]["fusion"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="fusion"):
        make_splice_check(ModelRegistry(bundle), Config())


def test_import_refuses_weights_that_do_not_reproduce_the_run(tmp_path: Path) -> None:
    from training.tamper.splice_cnn import build, import_gpu

    model = build()
    weights = {"srm": model.get_layer("srm").get_weights()[0]}
    for layer in model.layers:
        if layer.name.startswith("conv") or layer.name == "logit":
            kernel, bias = layer.get_weights()
            weights[f"{layer.name}_kernel"], weights[f"{layer.name}_bias"] = kernel, bias
    probe = np.random.default_rng(0).integers(0, 256, (4, 64, 64), dtype=np.uint8)
    logits = model.predict(probe[..., None].astype(np.float32), verbose=0)
    np.savez(tmp_path / "splice_cnn_keras.npz", **weights, probe_patches=probe, probe_logits=logits)
    import_gpu(tmp_path)  # its own logits: accepted
    np.savez(
        tmp_path / "splice_cnn_keras.npz", **weights, probe_patches=probe, probe_logits=logits + 0.1
    )
    with pytest.raises(ValueError, match="disagree"):
        import_gpu(tmp_path)


@pytest.mark.parametrize("name", ["cnn_trial", "cnn_v2_trial"])
def test_committed_trial_reports_are_their_json_rendered(name: str) -> None:
    """Each trial's report is its rule as committed plus the render of its JSON, and the CNN in
    models/ is the one a trial shipped and did not withdraw."""
    from training.tamper.splice_fusion import RESULTS, render

    folder = REPO / "reports" / "tamper_ela" / "splice"
    text = (folder / f"{name}.md").read_text()
    metrics = json.loads((folder / f"{name}.json").read_text())
    assert render(metrics, text.split(RESULTS)[0].rstrip()) == text
    decision = metrics["decision"]
    in_models = ModelRegistry(REPO / "models").entry(CNN_MODEL_NAME)
    if "sha256" in metrics["candidate"]:
        shipped = decision["shipped"] and not decision.get("withdrawn")
        assert (in_models.sha256 == metrics["candidate"]["sha256"]) is shipped


def test_cnn_sees_a_centred_window_of_a_large_capture(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    """A 1536x1280 capture: the trees score every tile of it, the CNN the centred 1024 px
    (32 x 32 tiles), so the trees draw the heat map."""
    check = make_splice_check(ModelRegistry(REPO / "models"), Config())
    big = cv2.resize(astronaut, (1536, 1280), interpolation=cv2.INTER_AREA)
    record = check.run(Capture(rgb=big), Artifacts(tmp_path))
    assert record["tiles"] == 48 * 40 and record["cnn_tiles"] == 32 * 32
    assert record["heat_map_model"] == "trees"


def test_cnn_training_tiles_are_labelled_as_the_trees_tiles(astronaut: np.ndarray) -> None:
    """A splice of the test face (a pasted quarter-ish region): positives are tiles >= 50 %
    pasted, negatives untouched ones, at most 24 positives and as many negatives (>= 8), and
    each patch is its tile with context."""
    from training.tamper.splice import MIN_NEGATIVES_PER_IMAGE, labelled_tiles, tile_share

    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[:320, :320]
    mask = np.zeros_like(gray)
    mask[40:200, 60:230] = 1
    sample = {"image": gray, "mask": mask}
    patches, labels = labelled_tiles(sample, np.random.default_rng(0))
    share = tile_share(mask).ravel()
    assert 0 < labels.sum() <= 24
    assert (labels == 0).sum() == max(MIN_NEGATIVES_PER_IMAGE, int(labels.sum()))
    inner = slice(CNN_CONTEXT, CNN_CONTEXT + TILE)
    every = tile_patches(gray)
    for patch, label in zip(patches, labels, strict=True):
        index = next(i for i, p in enumerate(every) if (p == patch).all())
        assert (share[index] >= 0.5) if label else (share[index] == 0)
        assert (patch[inner, inner] == every[index][inner, inner]).all()
