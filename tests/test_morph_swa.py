"""Morph CNN build options (--blocks), weight averaging of snapshots and BN re-estimation
(training/morph/cnn.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from training.morph.cnn import average_weights, build, keras, parse_blocks, reestimate_batch_norm

SIZE = 32  # the morph CNN's layers at a small input: a fast test


def _bn_variable(layer, name: str) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization) and name.startswith("moving_")


def test_average_of_identical_snapshots_is_that_snapshot(tmp_path):
    model = build(SIZE)
    path = tmp_path / "a.weights.h5"
    model.save_weights(path)
    averaged = average_weights(build(SIZE), [path, path, path])
    for want, got in zip(model.get_weights(), averaged.get_weights(), strict=True):
        np.testing.assert_array_equal(want, got)


def test_average_of_two_snapshots_is_their_mean(tmp_path):
    first, second = build(SIZE), build(SIZE)
    rng = np.random.default_rng(0)
    second.set_weights(
        [w + rng.normal(size=w.shape).astype(np.float32) for w in first.get_weights()]
    )
    first.save_weights(tmp_path / "a.weights.h5")
    second.save_weights(tmp_path / "b.weights.h5")
    averaged = average_weights(build(SIZE), [tmp_path / "a.weights.h5", tmp_path / "b.weights.h5"])
    for a, b, got in zip(
        first.get_weights(), second.get_weights(), averaged.get_weights(), strict=True
    ):
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-6, atol=1e-6)


def test_batch_norm_reestimation_changes_only_the_moving_statistics():
    model = build(SIZE)
    crops = np.random.default_rng(1).integers(0, 256, (40, SIZE, SIZE, 3)).astype(np.uint8)
    before = {(layer.name, v.path): v.numpy() for layer in model.layers for v in layer.weights}
    momenta = [layer.momentum for layer in model.layers if hasattr(layer, "momentum")]
    assert reestimate_batch_norm(model, crops, batch=16) == 2  # full batches only
    changed = set()
    for layer in model.layers:
        for v in layer.weights:
            if not np.array_equal(before[layer.name, v.path], v.numpy()):
                changed.add((layer.name, v.name))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert changed == {(n.name, s) for n in norms for s in ("moving_mean", "moving_variance")}
    # the first BN's statistics: the mean over both batches of its input's batch mean and variance
    conv = keras.Model(model.input, model.get_layer("block1_conv1").output)
    first = [conv(crops[k * 16 : (k + 1) * 16].astype(np.float32)).numpy() for k in range(2)]
    bn = model.get_layer("block1_bn1")
    np.testing.assert_allclose(
        bn.moving_mean.numpy(),
        np.mean([f.mean(axis=(0, 1, 2)) for f in first], axis=0),
        rtol=1e-4,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        bn.moving_variance.numpy(),
        np.mean([f.var(axis=(0, 1, 2)) for f in first], axis=0),
        rtol=1e-4,
        atol=1e-6,
    )
    # momenta and dropout rates restored
    assert [layer.momentum for layer in model.layers if hasattr(layer, "momentum")] == momenta
    assert all(layer.rate > 0 for layer in model.layers if isinstance(layer, keras.layers.Dropout))


def test_blocks_option_sets_the_conv_layers():
    blocks = parse_blocks("8,8/16")
    assert blocks == ((8, 8), (16,))
    convs = [
        layer.filters
        for layer in build(SIZE, blocks).layers
        if isinstance(layer, keras.layers.Conv2D) and layer.name.startswith("block")
    ]
    assert convs == [8, 8, 16]
