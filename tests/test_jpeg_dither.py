"""F1/F2 dithering baselines: the comb of a JPEG's DCT histogram must disappear."""

import numpy as np
import pytest
from skimage import data

from training.jpeg.data import jpeg_roundtrip
from training.jpeg.dither import comb_fraction, dither_f1, dither_f2, laplacian_rate


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return data.camera()[128:384, 128:384]  # never-JPEG 8-bit photo


@pytest.mark.parametrize("quality", [25, 50, 75])
def test_dither_removes_comb(camera, quality):
    jpeg, table = jpeg_roundtrip(camera, quality)
    assert comb_fraction(jpeg, table) > 0.85  # coefficients sit on multiples of the step
    assert comb_fraction(camera, table) < 0.35  # uniform phase would give 0.2
    for laundered in (dither_f1(jpeg, table, seed=1), dither_f2(jpeg, table, seed=1)):
        assert laundered.shape == jpeg.shape and laundered.dtype == np.uint8
        assert comb_fraction(laundered, table) < 0.35


def test_dither_changes_pixels_moderately(camera):
    jpeg, table = jpeg_roundtrip(camera, 50)
    f1 = dither_f1(jpeg, table, seed=0)
    diff = np.abs(f1.astype(int) - jpeg.astype(int))
    assert 0.5 < diff.mean() < 8  # noise inside the bins, not a new picture
    assert not np.array_equal(f1, dither_f1(jpeg, table, seed=2))  # seeded draws


def test_laplacian_rate_estimate():
    rng = np.random.default_rng(0)
    step, rate = 10.0, 0.08
    coefficients = rng.laplace(0, 1 / rate, 20000)
    estimate = laplacian_rate(np.round(coefficients / step), step)
    assert estimate == pytest.approx(rate, rel=0.1)
    assert laplacian_rate(np.zeros(100), step) is None  # nothing to fit


def test_odd_sized_image_keeps_border(camera):
    image = camera[:101, :77]
    jpeg, table = jpeg_roundtrip(image, 50)
    f1 = dither_f1(jpeg, table)
    assert f1.shape == image.shape
    assert np.array_equal(f1[96:], jpeg[96:]) and np.array_equal(f1[:, 72:], jpeg[:, 72:])
