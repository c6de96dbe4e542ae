"""ELA / wavelet preprocessing, synthetic manipulations, one CNN training step, TFLite parity."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from kiosk.contract.errors import InputError
from kiosk.runtime.forensics.ela_features import cnn_input, ela_map, heat_map_png, noise_residual
from training.tamper.manipulate import copy_move, face_morph, jpeg_roundtrip, splice


def texture(seed: int, size: int = 192) -> np.ndarray:
    """A photo-like RGB texture: blurred noise at two scales plus a gradient."""
    rng = np.random.default_rng(seed)
    coarse = cv2.GaussianBlur(rng.normal(128, 60, (size, size, 3)), (0, 0), 6)
    fine = cv2.GaussianBlur(rng.normal(0, 25, (size, size, 3)), (0, 0), 0.8)
    ramp = np.linspace(-30, 30, size)[None, :, None]
    return np.clip(coarse + fine + ramp, 0, 255).astype(np.uint8)


def test_pasted_region_from_another_quality_is_hotter():
    single_save = jpeg_roundtrip(texture(0), 70)  # an untouched JPEG saved once
    donor = jpeg_roundtrip(texture(1), 99)
    region = np.zeros(single_save.shape[:2], bool)
    region[52:132, 60:140] = True
    pasted = single_save.copy()
    pasted[region] = donor[region]
    heat = ela_map(pasted, 90)
    assert heat[region].mean() > 2 * heat[~region].mean()
    untouched = ela_map(single_save, 90)
    assert heat[region].mean() > 2 * untouched[region].mean()


def test_wavelet_residual_shape_and_range():
    smooth = cv2.GaussianBlur(texture(2, 100), (0, 0), 3)
    noisy = np.clip(smooth + np.random.default_rng(3).normal(0, 12, smooth.shape), 0, 255)
    for image in (smooth, noisy.astype(np.uint8)):
        residual = noise_residual(image)
        assert residual.shape == (100, 100) and residual.dtype == np.float32
        assert residual.min() >= 0 and residual.max() <= 1
    assert noise_residual(noisy.astype(np.uint8)).mean() > 3 * noise_residual(smooth).mean()


def test_cnn_input_and_heat_map():
    features = cnn_input(texture(4, 150), 90)
    assert features.shape == (128, 128, 2) and features.dtype == np.uint8
    png = heat_map_png(ela_map(texture(4, 150), 90))
    assert Image.open(io.BytesIO(png)).size == (150, 150)


@pytest.mark.parametrize("shape", [(8, 300, 3), (15, 15, 3)])
def test_tiny_images_are_refused(shape):
    with pytest.raises(InputError, match="too small"):
        cnn_input(np.zeros(shape, np.uint8), 90)


def face_points(seed: int, size: int) -> np.ndarray:
    """68 plausible, non-degenerate landmark positions (jaw arc + inner points)."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(np.pi * 0.05, np.pi * 0.95, 17)
    jaw = np.stack([0.5 + 0.35 * np.cos(angles), 0.45 + 0.4 * np.sin(angles)], 1)[::-1]
    inner = np.stack([rng.uniform(0.25, 0.75, 51), rng.uniform(0.25, 0.75, 51)], 1)
    return (np.vstack([jaw, inner]) * size).astype(np.float32)


def test_morph_splice_and_copy_move_give_image_and_mask():
    rng = np.random.default_rng(5)
    face_a, face_b = texture(6, 160), texture(7, 180)
    morph, alpha = face_morph(face_a, face_points(0, 160), face_b, face_points(1, 180), rng)
    assert morph.shape == face_a.shape and morph.dtype == np.uint8
    assert alpha.shape == face_a.shape[:2] and alpha.min() >= 0 and alpha.max() <= 1
    inside, outside = alpha > 0.99, alpha < 1e-3
    assert inside.mean() > 0.1 and outside.mean() > 0.1
    assert np.array_equal(morph[outside], face_a[outside])
    assert np.abs(morph[inside].astype(int) - face_a[inside]).mean() > 5
    for image, mask in (splice(face_a, face_b, rng), copy_move(face_a, rng)):
        assert image.shape == face_a.shape and mask.max() > 0.99
        assert np.abs(image.astype(int) - face_a)[mask > 0.99].mean() > 1


def test_one_training_step_and_tflite_parity():
    from training.export import read_metadata
    from training.nets import logit_model
    from training.tamper.evaluate import export, tflite_scores
    from training.tamper.train import make_ela_net
    from training.tf_setup import seed_everything, tf

    seed_everything(0)
    model = make_ela_net()
    model.compile(tf.keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    inputs = np.stack([cnn_input(texture(i, 130), 90) for i in range(4)])
    labels = np.array([0, 1, 0, 1], np.float32)
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(inputs, labels)
    assert np.isfinite(loss)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    files = export(model, inputs, 90)
    embedded = read_metadata(files["int8"])
    assert embedded["name"] == "tamper_ela" and embedded["ela_quality"] == 90
    assert embedded["variant"] == "int8" and embedded["input_shape"] == [-1, 128, 128, 2]
    keras_scores = tf.sigmoid(logit_model(model)(inputs.astype(np.float32)))
    keras_scores = keras_scores.numpy().reshape(-1)
    np.testing.assert_allclose(tflite_scores(files["float32"], inputs), keras_scores, atol=1e-4)
    np.testing.assert_allclose(tflite_scores(files["int8"], inputs), keras_scores, atol=0.05)


def test_feature_cache_is_keyed_by_quality_and_data(tmp_path):
    from training.tamper.features import cache_key

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x" * 10)
    (tmp_path / "index.csv").write_text("image,label\nimages/a.jpg,0\n")
    rows = [{"image": "images/a.jpg", "label": "0"}]
    key = cache_key(tmp_path, rows, 90)
    assert key == cache_key(tmp_path, rows, 90)
    assert key != cache_key(tmp_path, rows, 85)
    (tmp_path / "images" / "a.jpg").write_bytes(b"x" * 11)  # regenerated data
    assert key != cache_key(tmp_path, rows, 90)
