"""kiosk.runtime.vision.forest against dlib itself: a small model trained here, exported by
training.landmarks_export, must give dlib's points bit for bit (grey and RGB, boxes inside and
past the image's edges), and the kiosk must load the bundle's exported models."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest

from kiosk.contract.errors import ModelError
from kiosk.contract.models import LANDMARK_ARRAYS
from kiosk.runtime.vision.forest import RegressionForest
from kiosk.runtime.vision.landmarks import LandmarkPredictor
from training.landmarks_export import dlib_arrays, export
from training.paths import MODELS

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module", params=[4, 2])
def dlib_model(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A model trained in a second on the two test faces and their mirrors, with points from
    the bundle's predictor: trees of depth 4 (the kiosk's: 15 splits, a 2-byte pattern) and 2."""
    bundle = LandmarkPredictor(MODELS / "shape_predictor_yunet.npz")
    images, objects = [], []
    for name in ("face_open.jpg", "face_eyes_closed.jpg"):
        gray = cv2.cvtColor(cv2.imread(str(DATA / name)), cv2.COLOR_BGR2GRAY)
        for image in (gray, np.ascontiguousarray(gray[:, ::-1])):
            height, width = image.shape
            box = (width * 0.2, height * 0.2, width * 0.8, height * 0.85)
            points = bundle.predict(image, box).points
            rect = dlib.rectangle(*(round(v) for v in box))
            parts = [dlib.point(int(x), int(y)) for x, y in points]
            images.append(image)
            objects.append([dlib.full_object_detection(rect, parts)])
    options = dlib.shape_predictor_training_options()
    options.cascade_depth, options.tree_depth, options.num_trees_per_cascade_level = (
        3,
        request.param,
        6,
    )
    options.oversampling_amount, options.feature_pool_size, options.num_test_splits = 3, 60, 5
    options.be_verbose = False
    path = tmp_path_factory.mktemp("dlib") / "model.dat"
    dlib.train_shape_predictor(images, objects, options).save(str(path))
    return path


def test_exported_arrays_give_dlibs_points_bit_for_bit(dlib_model: Path) -> None:
    reference = dlib.shape_predictor(str(dlib_model))
    forest = RegressionForest(dlib_arrays(dlib_model.read_bytes()))
    rgb = cv2.cvtColor(cv2.imread(str(DATA / "face_open.jpg")), cv2.COLOR_BGR2RGB)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    rng = np.random.default_rng(3)
    rects = [
        (-40, -30, width // 2, height // 2),
        (width // 2, height // 2, width + 50, height + 60),
    ]
    for _ in range(30):
        side = int(rng.integers(30, min(height, width)))
        x0, y0 = int(rng.integers(-side // 3, width - side // 2)), int(rng.integers(-20, height))
        rects.append((x0, y0, x0 + side, y0 + side))
    for image in (gray, rgb):
        ours = forest.fit(image, np.array(rects))
        theirs = [
            [(p.x, p.y) for p in reference(image, dlib.rectangle(*rect)).parts()] for rect in rects
        ]
        assert np.array_equal(ours, theirs)


def test_the_predictor_gives_the_same_landmarks_from_dat_and_npz(
    dlib_model: Path, tmp_path: Path
) -> None:
    npz = tmp_path / "model.npz"
    export(dlib_model, npz)
    gray = cv2.cvtColor(cv2.imread(str(DATA / "face_eyes_closed.jpg")), cv2.COLOR_BGR2GRAY)
    box = (30.4, 41.7, 180.2, 200.9)
    from_dat = LandmarkPredictor(dlib_model).predict(gray, box).points
    from_npz = LandmarkPredictor(npz, data=npz.read_bytes()).predict(gray, box).points
    assert from_npz.shape == (68, 2) and np.array_equal(from_dat, from_npz)


def test_a_damaged_export_is_refused_with_a_model_error(dlib_model: Path) -> None:
    arrays = dlib_arrays(dlib_model.read_bytes())
    with pytest.raises(ModelError, match="cannot be read"):
        RegressionForest.from_bytes(b"PK\x03\x04 not a zip")
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if k != "leaves"})
    with pytest.raises(ModelError, match="lack leaves"):
        RegressionForest.from_bytes(buffer.getvalue())
    fewer = dict(arrays, splits=arrays["splits"][:, :, :-1])  # a split short of its leaves
    with pytest.raises(ModelError, match="splits but leaves"):
        RegressionForest(fewer)
    depth5 = dict(
        arrays,
        splits=np.zeros((1, 1, 31, 2), np.int32),
        thresholds=np.zeros((1, 1, 31), np.float32),
        leaves=np.zeros((1, 1, 32, 136), np.float32),
    )
    with pytest.raises(ModelError, match="depth 5"):
        RegressionForest(depth5)


def test_a_dlib_file_of_another_layout_is_refused(dlib_model: Path) -> None:
    data = dlib_model.read_bytes()
    with pytest.raises(ValueError, match="version 2"):
        dlib_arrays(b"\x01\x02" + data[2:])
    with pytest.raises(ValueError, match="bytes left"):
        dlib_arrays(data + b"\x00")
    with pytest.raises(ValueError, match=r"ends early|not a dlib number"):
        dlib_arrays(data[: len(data) // 2])


def test_the_bundles_landmark_models_are_exported_arrays() -> None:
    from kiosk.contract.manifest import load_manifest

    entries = {n: e for n, e in load_manifest(MODELS).models.items() if "shape_pred" in n}
    assert entries
    for entry in entries.values():
        assert entry.file.endswith(".npz")
        with np.load(MODELS / entry.file) as stored:
            assert tuple(stored.files) == LANDMARK_ARRAYS
        assert entry.extra["metrics"]["dlib_parity"]["differing"] == 0
