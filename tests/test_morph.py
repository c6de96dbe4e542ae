"""The morph check: features, bad input, the tree evaluator and the CNN fusion (the shared
`Fusion`, scoring as the morph-only formula before it did), the CNN's test-time views (the
contract's, the manifest entry's and the kiosk's agree), the shipped models on held-out faces,
the JSON key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.cli import main
from kiosk.config import Config
from kiosk.contract.errors import InputError, ModelError
from kiosk.contract.models import spec
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.morph import (
    CNN_MODEL_NAME,
    CROP,
    MODEL_NAME,
    N_FEATURES,
    TREES_LOGIT,
    MorphCheck,
    cnn_tta,
    face_crop,
    features,
    make_morph_check,
    morph_fusion,
    tta_views,
    view_count,
)
from kiosk.runtime.models.fusion import CNN_LOGIT
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.trees import Trees
from kiosk.runtime.vision.mtcnn_lite import MtcnnLite
from tests.conftest import data_root_or_skip, save_rgb

MODELS = Path(__file__).resolve().parent.parent / "models"
ASTRONAUT_FACE = (170.0, 40.0, 270.0, 160.0)
# Recorded before the shared Fusion: the morph_cnn entry's fusion in its old format (manifest of
# 2026-11-29), score = sigmoid(cnn x CNN logit + trees x trees logit + bias), and what that
# bundle gave the astronaut's face crop (ASTRONAUT_FACE) from these logits.
OLD_FUSION = {"cnn": 0.833763, "trees": 0.453063, "bias": 1.13072}
ASTRONAUT_LOGITS = {CNN_LOGIT: -5.005616188049316, TREES_LOGIT: -2.1414761182186335}
ASTRONAUT_SCORE = 0.017758007515764795


@pytest.fixture(scope="module")
def check() -> MorphCheck:
    """The shipped check: the trees, fused with the CNN when the manifest lists it."""
    check = make_morph_check(ModelRegistry(MODELS), Config())
    if check is None:
        pytest.skip("morph is not in models/manifest.json")
    return check


def test_features_are_finite_and_see_smoothing(astronaut: np.ndarray) -> None:
    crop = face_crop(astronaut, ASTRONAUT_FACE)
    assert crop.shape == (CROP, CROP, 3)
    sharp = features(crop)
    assert sharp.shape == (N_FEATURES,) and np.isfinite(sharp).all()
    # a smoothed centre (what averaging two faces does) lowers the centre cells' residual
    smoothed = crop.copy()
    smoothed[32:96, 32:96] = cv2.GaussianBlur(crop, (0, 0), 1.5)[32:96, 32:96]
    cells = slice(0, 16)  # median-residual cells, relative to the crop's median cell
    centre = [5, 6, 9, 10]
    assert (features(smoothed)[cells][centre] < sharp[cells][centre] - 0.3).all()


def test_bad_input_errors_clearly(astronaut: np.ndarray) -> None:
    with pytest.raises(InputError, match="too small for morph detection"):
        face_crop(astronaut, (10.0, 10.0, 30.0, 30.0))
    with pytest.raises(InputError, match="RGB uint8"):
        face_crop(astronaut.astype(np.float32), ASTRONAUT_FACE)
    with pytest.raises(InputError, match="crop"):
        features(np.zeros((64, 64, 3), np.uint8))


def test_a_model_of_another_feature_count_is_refused(check: MorphCheck) -> None:
    arrays = {
        "feature": check.trees.feature,
        "threshold": check.trees.threshold,
        "left": check.trees.left,
        "right": check.trees.right,
        "value": check.trees.value,
        "bias": np.array(check.trees.bias),
        "rate": np.array(check.trees.rate),
        "depth": np.array(check.trees.depth),
        "n_features": np.array(N_FEATURES - 1),
    }
    with pytest.raises(ModelError, match="different versions"):
        MorphCheck(Trees(arrays), 0.5)


def _walk(trees: Trees, x: np.ndarray) -> np.ndarray:
    """The plain definition: each sample down each tree, root to leaf, leaves summed."""
    total = np.zeros(len(x))
    for t in range(len(trees.feature)):
        for i, row in enumerate(x):
            node = 0
            while trees.feature[t, node] >= 0:
                go_left = row[trees.feature[t, node]] <= trees.threshold[t, node]
                node = trees.left[t, node] if go_left else trees.right[t, node]
            total[i] += trees.value[t, node]
    return trees.bias + trees.rate * total


def test_tree_logits_match_the_tree_walk(check: MorphCheck) -> None:
    """All trees at once per level (the kiosk's path) = walking each tree from its root."""
    x = np.random.default_rng(0).normal(0, 1.5, (40, N_FEATURES)).astype(np.float32)
    logits = check.trees.logits(x)
    assert logits.std() > 0.05  # the random rows reach different leaves
    np.testing.assert_allclose(logits, _walk(check.trees, x), atol=1e-9)
    np.testing.assert_array_equal(check.trees.logits(x, chunk=7), logits)  # chunk edges
    np.testing.assert_allclose(check.trees.predict(x), 1 / (1 + np.exp(-logits)))
    with pytest.raises(ModelError, match="different versions"):
        check.trees.logits(x[:, 1:])


def test_fusion_weights_come_from_the_manifest_entry() -> None:
    raw = {"features": [CNN_LOGIT, TREES_LOGIT], "weights": [0.8, 0.5], "bias": -1.0}
    fusion = morph_fusion({"fusion": raw})
    assert fusion.as_dict() == raw
    assert fusion.log_odds({CNN_LOGIT: 2.0, TREES_LOGIT: -1.0}) == pytest.approx(0.8 * 2.0 - 1.5)
    for extra in ({}, {"fusion": None}):
        with pytest.raises(ModelError, match=r"needs `fusion` weights.*re-run make morph"):
            morph_fusion(extra)
    # the format before the shared Fusion is refused, not misread: the bundle is re-exported
    old = r"features, weights and bias .*keys \['bias', 'cnn', 'trees'\].*re-run make morph"
    with pytest.raises(ModelError, match=old):
        morph_fusion({"fusion": OLD_FUSION})
    with pytest.raises(ModelError, match="features, weights and bias"):
        morph_fusion({"fusion": "0.5"})
    with pytest.raises(ModelError, match=r"this kiosk computes.*re-run make morph"):
        morph_fusion({"fusion": {**raw, "features": [CNN_LOGIT, "splice_logit"]}})


def test_the_shared_fusion_scores_as_the_old_morph_formula() -> None:
    """Same weights in the new format: the recorded score, and the old formula on any logits,
    to float rounding."""
    fusion = morph_fusion(
        {
            "fusion": {
                "features": [CNN_LOGIT, TREES_LOGIT],
                "weights": [OLD_FUSION["cnn"], OLD_FUSION["trees"]],
                "bias": OLD_FUSION["bias"],
            }
        }
    )
    assert fusion.score(ASTRONAUT_LOGITS) == pytest.approx(ASTRONAUT_SCORE, rel=1e-14)
    z = np.random.default_rng(0).normal(0, 8, (200, 2))
    old = 1 / (1 + np.exp(-(OLD_FUSION["cnn"] * z[:, 0] + OLD_FUSION["trees"] * z[:, 1] + 1.13072)))
    new = [fusion.score({CNN_LOGIT: cnn, TREES_LOGIT: trees}) for cnn, trees in z]
    np.testing.assert_allclose(new, old, rtol=1e-14, atol=0)


def test_training_fits_the_fusion_the_kiosk_reads() -> None:
    """training/morph/train.py: fit_fusion names the kiosk's features, its entry reads back,
    and `fused` (vectorised, for validation) is the kiosk's own log-odds."""
    from training.morph.train import CNN_ALONE, fit_fusion, fused

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    z = np.column_stack([2.0 * y + rng.normal(0, 1, 400), y + rng.normal(0, 1, 400)])
    fusion = fit_fusion(z, y)
    assert fusion.features == (CNN_LOGIT, TREES_LOGIT)
    assert fusion.weights[0] > fusion.weights[1] > 0  # the stronger feature weighs more
    assert morph_fusion({"fusion": json.loads(json.dumps(fusion.as_dict()))}) == fusion
    expected = [fusion.log_odds({CNN_LOGIT: cnn, TREES_LOGIT: trees}) for cnn, trees in z]
    np.testing.assert_allclose(fused(fusion, z), expected, rtol=1e-12)
    alone = morph_fusion({"fusion": CNN_ALONE.as_dict()})
    assert alone.score({CNN_LOGIT: 1.5, TREES_LOGIT: -9.0}) == pytest.approx(
        1 / (1 + math.exp(-1.5))
    )


def test_tta_views_mirror_and_shift_without_resampling() -> None:
    crop = np.random.default_rng(0).integers(0, 256, (CROP, CROP, 3), dtype=np.uint8)
    for mirror, shift, count in ((False, 0, 1), (True, 0, 2), (False, 2, 5), (True, 2, 10)):
        views = tta_views(crop, mirror, shift)
        assert len(views) == count == view_count(mirror, shift)
        assert all(v.shape == crop.shape and v.dtype == np.uint8 for v in views)
        np.testing.assert_array_equal(views[0], crop)  # the crop itself comes first
    views = tta_views(crop, True, 2)
    np.testing.assert_array_equal(views[5], crop[:, ::-1])  # the mirror, unshifted
    up, down, left, right = views[1:5]  # shifted by -2 / +2 px in y, then in x
    np.testing.assert_array_equal(down[:-2], crop[2:])
    np.testing.assert_array_equal(up[2:], crop[:-2])
    np.testing.assert_array_equal(right[:, :-2], crop[:, 2:])
    np.testing.assert_array_equal(left[:, 2:], crop[:, :-2])
    # reflected border (numpy "reflect" = TF's REFLECT, the CNN's training shifts): no edge copy
    np.testing.assert_array_equal(right[:, -2:], crop[:, [-2, -3]])
    np.testing.assert_array_equal(left[:, :2], crop[:, [2, 1]])


def test_the_entry_names_the_views_and_an_older_entry_means_the_crop_alone() -> None:
    assert cnn_tta({}) == (False, 0)  # a bundle from before test-time augmentation
    assert cnn_tta({"tta_mirror": 1, "tta_shift_px": 2}) == (True, 2)
    for bad in (
        {"tta_mirror": True},
        {"tta_mirror": 2},
        {"tta_mirror": "1"},
        {"tta_shift_px": 5},
        {"tta_shift_px": -1},
        {"tta_shift_px": 2.0},
    ):
        with pytest.raises(ModelError, match=r"tta_.*re-run make morph"):
            cnn_tta(bad)


def test_contract_entry_and_kiosk_agree_on_the_cnn_views(check: MorphCheck) -> None:
    """The morph_cnn spec's views are the shipped entry's (its fusion was fitted on them) and the
    check's, whose CNN logit is the mean of its views' logits."""
    if check.cnn is None:
        pytest.skip(f"{CNN_MODEL_NAME} is not in models/manifest.json")
    cnn_spec = spec(CNN_MODEL_NAME)
    wanted = (bool(cnn_spec.parameter("tta_mirror")), int(cnn_spec.parameter("tta_shift_px")))
    assert cnn_tta(ModelRegistry(MODELS).entry(CNN_MODEL_NAME).extra) == wanted
    assert (check.cnn.mirror, check.cnn.shift_px) == wanted
    crop = np.random.default_rng(1).integers(0, 256, (CROP, CROP, 3), dtype=np.uint8)
    views = tta_views(crop, *wanted)
    assert check.cnn.views == len(views)
    expected = np.mean([check.cnn.view_logit(v) for v in views])
    assert check.cnn.logit(crop) == pytest.approx(expected, rel=1e-12)


def test_the_cnn_sees_the_crop_and_the_fusion_uses_it(
    check: MorphCheck, astronaut: np.ndarray
) -> None:
    if check.cnn is None or check.fusion is None:
        pytest.skip(f"{CNN_MODEL_NAME} is not in models/manifest.json")
    crop = face_crop(astronaut, ASTRONAUT_FACE)
    smoothed = cv2.GaussianBlur(crop, (0, 0), 2.0)
    assert abs(check.cnn.logit(crop) - check.cnn.logit(smoothed)) > 0.05
    record = check.run(Capture(astronaut, ASTRONAUT_FACE), Artifacts())
    cnn, trees = (np.log(record[k] / (1 - record[k])) for k in ("cnn_score", "trees_score"))
    fused = check.fusion.score({CNN_LOGIT: cnn, TREES_LOGIT: trees})
    assert record["score"] == pytest.approx(fused, abs=1e-4)
    assert record["model"] == "trees+cnn"


def test_training_scores_the_release_as_the_kiosk_does(
    check: MorphCheck, astronaut: np.ndarray, tmp_path: Path
) -> None:
    """train.py's `bundle_scores` (the release a candidate must beat on validation) gives each
    crop the score the kiosk's check gives that face, with the release's own threshold."""
    from training.morph.train import bundle_scores

    boxes = [ASTRONAUT_FACE, (150.0, 30.0, 290.0, 180.0), (180.0, 50.0, 260.0, 150.0)]
    crops = np.stack([face_crop(astronaut, box) for box in boxes])
    np.savez(tmp_path / "crops.npz", crop=crops)
    x = np.stack([features(crop) for crop in crops]).astype(np.float64)
    scores, about = bundle_scores(MODELS, x, tmp_path / "crops.npz")
    expected = [check.score(astronaut, box) for box in boxes]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert about["threshold"] == check.threshold
    assert bundle_scores(tmp_path, x, tmp_path / "crops.npz") is None  # no release there


def test_kiosk_landmarks_for_faces_without_stored_points(astronaut: np.ndarray) -> None:
    """training/morph/data.py: faces without .pts files get the kiosk's detector box and
    landmark model (the eyes where the astronaut's are); a face under MIN_FACE_PX and a
    face-less picture are dropped with their reason."""
    from kiosk.runtime.vision.detectors import DEFAULT_BACKEND, make_detector
    from kiosk.runtime.vision.landmarks import landmark_predictor
    from training.morph.data import kiosk_landmarks

    config, registry = Config(), ModelRegistry(MODELS)
    detector = make_detector(DEFAULT_BACKEND, registry, config.detector)
    predictor = landmark_predictor(config, registry, DEFAULT_BACKEND)
    tight = np.ascontiguousarray(astronaut[20:200, 150:300])  # a tight crop, like CEW's
    points = kiosk_landmarks(tight, detector, predictor)
    assert isinstance(points, np.ndarray) and points.shape == (68, 2)
    eyes = points[36:48].mean(0) + np.array([150, 20])  # back in the astronaut's pixels
    assert 190 < eyes[0] < 250 and 70 < eyes[1] < 110
    small = cv2.resize(tight, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    small = cv2.copyMakeBorder(small, 40, 40, 40, 40, cv2.BORDER_REPLICATE)
    assert kiosk_landmarks(small, detector, predictor) in ("small_face", "no_single_face")
    blank = np.full((200, 200, 3), 127, np.uint8)
    assert kiosk_landmarks(blank, detector, predictor) == "no_single_face"


def test_no_face_is_not_applied(check: MorphCheck, astronaut: np.ndarray) -> None:
    assert check.run(Capture(astronaut), Artifacts()) == {"applied": False, "face_px": None}


def test_morphs_of_held_out_faces_score_above_their_bona_fide_faces(check: MorphCheck) -> None:
    """Six HELEN faces of the *test* split (never seen in training): each morphed with the next
    (feathered, Poisson and full-image, weight 0.5 drawn from a fixed seed), saved as JPEG q85
    like their bona fide images. Morphs must score higher on average, and most pairs must order
    right."""
    from training.morph.data import METHODS, faces, load_rgb, morph
    from training.tamper.manipulate import jpeg_roundtrip

    root = data_root_or_skip()
    held_out = [f for f in faces(root) if f.split == "test" and "helen" in f.path.parts[-2]][:6]
    detector = MtcnnLite.from_models_dir(MODELS)
    rng = np.random.default_rng(0)

    def score(rgb: np.ndarray) -> float:
        rgb = jpeg_roundtrip(rgb, 85)
        (face,) = detector.detect(rgb)
        return check.score(rgb, face.box)

    bona, morphs = [], []
    for a, b in zip(held_out, held_out[1:] + held_out[:1], strict=True):
        image_a = load_rgb(a.path)
        bona.append(score(image_a))
        for method in METHODS:
            morphed, _ = morph(image_a, a.points, load_rgb(b.path), b.points, method, rng)
            morphs.append(score(morphed))
    pairs = np.array(morphs).reshape(len(bona), len(METHODS)) > np.array(bona)[:, None]
    assert np.mean(morphs) > np.mean(bona) + 0.2
    assert pairs.mean() >= 0.75


def test_forensics_json_has_the_morph_key(tmp_path: Path, capsys, portrait: np.ndarray) -> None:
    if MODEL_NAME not in ModelRegistry(MODELS).entries:
        pytest.skip("morph is not in models/manifest.json")
    path = save_rgb(tmp_path / "portrait.png", portrait)
    assert main(["forensics", "--json", str(path)]) in (0, 1)
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    morph = record["morph"]
    assert morph["applied"] and 0.0 <= morph["score"] <= 1.0
    assert morph["flagged"] == (morph["score"] >= morph["threshold"])
    assert 0.0 <= morph["trees_score"] <= 1.0
    if CNN_MODEL_NAME in ModelRegistry(MODELS).entries:
        assert 0.0 <= morph["cnn_score"] <= 1.0 and morph["model"] == "trees+cnn"
        entry = ModelRegistry(MODELS).entry(CNN_MODEL_NAME)
        assert morph["cnn_views"] == len(
            tta_views(np.zeros((CROP, CROP, 3)), *cnn_tta(entry.extra))
        )
