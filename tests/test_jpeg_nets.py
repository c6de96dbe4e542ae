"""JPEG networks on tiny data: KV filter, one training step each, TFLite parity with Keras."""

import argparse

import numpy as np
import pytest

from training.jpeg import nets
from training.tf_setup import tf

pytestmark = pytest.mark.slow


def test_kv_kernel_values_and_flat_response():
    kernel = nets.KV_KERNEL * 12
    assert kernel[2, 2] == -12 and kernel[0, 0] == -1 and kernel[1, 2] == 8 and kernel[0, 1] == 2
    assert np.array_equal(kernel, kernel.T) and np.array_equal(kernel, kernel[::-1])
    assert abs(nets.KV_KERNEL.sum()) < 1e-6
    layer = nets.kv_residual()
    flat = layer(tf.fill((1, 32, 32, 1), 0.3)).numpy()
    assert np.abs(flat[:, 2:-2, 2:-2]).max() < 1e-6  # constant image: zero residual inside
    ramp = layer(tf.reshape(tf.range(32.0), (1, 1, 32, 1)) * tf.ones((1, 32, 1, 1))).numpy()
    assert np.abs(ramp[:, 2:-2, 2:-2]).max() < 1e-4  # the filter also kills linear ramps


@pytest.mark.parametrize("arch", sorted(nets.DETECTORS))
def test_detector_trains_one_step(arch):
    model = nets.DETECTORS[arch](64)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 64, 64, 1)).astype(np.float32)
    y = np.array([0, 1] * 4, np.float32)
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(
        not np.allclose(a, b.numpy()) for a, b in zip(before, model.trainable_weights, strict=True)
    )
    if arch == "constrained":
        kernel = model.get_layer("constrained").kernel.numpy()
        assert np.allclose(kernel[2, 2], -1) and np.allclose(kernel.sum(axis=(0, 1)), 0, atol=1e-5)


def test_generator_is_identity_at_start_and_any_size():
    model = nets.generator(blocks=1, filters=8)
    image = np.random.default_rng(1).uniform(-0.9, 0.9, (1, 40, 56, 1)).astype(np.float32)
    out = model(image, training=False).numpy()
    assert out.shape == image.shape and np.allclose(out, image, atol=1e-3)


def test_gan_one_step(tmp_path, monkeypatch):
    from training.jpeg import gan

    monkeypatch.setattr(gan, "run_dir", lambda *a: tmp_path)
    nets.kv_discriminator(64).save_weights(tmp_path / "best.weights.h5")
    args = argparse.Namespace(
        size=64, blocks=1, filters=8, g_lr=5e-4, d_lr=5e-6, beta=1e-6, gamma=1e-2
    )
    trainer = gan.GanTrainer(args)
    rng = np.random.default_rng(2)
    jpeg = tf.constant(rng.uniform(-1, 1, (2, 64, 64, 1)), tf.float32)
    original = tf.constant(rng.uniform(-1, 1, (2, 64, 64, 1)), tf.float32)
    trainer.weights.assign([1.0, args.beta, args.gamma])
    d_before = trainer.discriminator.get_layer("fc").kernel.numpy().copy()
    losses = trainer.step(jpeg, original, True)
    assert all(np.isfinite(float(v)) for v in losses.values())
    assert float(losses["d"]) > 0
    assert not np.allclose(d_before, trainer.discriminator.get_layer("fc").kernel.numpy())


def test_int8_tflite_matches_keras(tmp_path):
    from kiosk.runtime.models.tflite_io import BinaryClassifier
    from training.export import export_variants

    tf.keras.utils.set_random_seed(3)
    model = nets.kv_discriminator(64, base_filters=4, dense=8)
    rng = np.random.default_rng(3)
    patches = rng.integers(0, 256, (24, 64, 64), dtype=np.uint8)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(patches[..., None].astype(np.float32), np.arange(24) % 2, epochs=1, verbose=0)
    paths = export_variants(model, patches, tmp_path / "tiny")
    keras_scores = model.predict(patches[..., None].astype(np.float32), verbose=0)[:, 0]
    for name, tolerance in (("float32", 1e-4), ("int8", 0.08)):
        classifier = BinaryClassifier(paths[name].read_bytes())
        scores = np.array([classifier.score(p) for p in patches])
        assert np.abs(scores - keras_scores).max() < tolerance, name
