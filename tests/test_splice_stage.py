"""The splice check's comb features and its image stage: a comb is measured where a JPEG past
left one, the region pooling tells a region from one tile, and a bundle without an image stage
is refused with what to do."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kiosk.contract.errors import ModelError
from kiosk.runtime.forensics.splice import ImageStage, region_features
from kiosk.runtime.forensics.splice_features import comb_features
from training.tamper.splice import host_groups


def _jpeg(gray: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


@pytest.fixture()
def gray(astronaut: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)


def test_on_grid_comb_is_missing_where_a_never_jpeg_region_was_pasted(gray: np.ndarray) -> None:
    """A quality-75 JPEG host with a never-JPEG quarter (saved losslessly): the host's tiles sit
    on its quantisation comb (feature 0: mean fit of the strongest comb), the quarter's do not."""
    spliced = _jpeg(gray, 75)
    spliced[:256, :256] = gray[:256, :256]
    fit = comb_features(spliced)[..., 0]
    assert fit.shape == (16, 16)
    assert fit[8:, 8:].mean() > fit[:8, :8].mean() + 0.3


def test_off_grid_dc_comb_marks_a_paste_with_its_own_grid(gray: np.ndarray) -> None:
    """A never-JPEG host with a quarter from a quality-50 JPEG pasted 3 px down, 5 px right of the
    host's grid: the shifted-grid DC comb (feature 4) is higher on the quarter."""
    donor = _jpeg(gray, 50)
    spliced = gray.copy()
    spliced[3:259, 5:261] = donor[:256, :256]
    z = comb_features(spliced)[..., 4]
    assert z[1:7, 1:7].mean() > z[9:, 9:].mean() + 1.0


def test_region_features_tell_a_region_from_one_tile() -> None:
    """Same highest tile, but only the 3x3 region fills the box-smoothed maximum and the
    largest region above 0.5."""
    one, region = np.full((10, 10), 0.05), np.full((10, 10), 0.05)
    one[5, 5] = 0.9
    region[4:7, 4:7] = 0.9
    a, b = region_features(one), region_features(region)
    assert a.shape == b.shape and np.isfinite(a).all() and np.isfinite(b).all()
    assert a[0] == pytest.approx(b[0])  # highest tile
    assert b[8] > a[8] + 0.5  # 3x3 box maximum
    assert b[12] == pytest.approx(9 / 100) and a[12] == pytest.approx(1 / 100)  # region >= 0.5


def test_image_stage_scores_and_refuses_an_old_bundle() -> None:
    count = len(region_features(np.zeros((4, 4))))
    weights = np.zeros(count)
    weights[8] = 10.0  # the 3x3 box maximum
    stage = ImageStage(
        {"image_weights": weights, "image_bias": np.array(-5.0), "tile_threshold": np.array(0.9)}
    )
    one, region = np.full((10, 10), 0.05), np.full((10, 10), 0.05)
    one[5, 5] = region[4:7, 4:7] = 0.9
    assert stage.score(region) > 0.9 > stage.score(one)
    with pytest.raises(ModelError, match="re-run"):
        ImageStage({"image_weights": weights})


def test_host_groups_follow_the_build_order() -> None:
    kinds = ["authentic", "splice", "copy_move", "authentic", "splice"] * 2
    groups = host_groups([{"kind": kind} for kind in kinds], n_pictures=2)
    assert groups.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 1, 1]


def test_banded_block_statistics_equal_the_whole_window_ones() -> None:
    """The comb features' block sums and DCT coefficients are computed a band of tile rows at a
    time to bound memory; every band edge (and a last, partial band) must give what one pass
    over the whole window gives."""
    from kiosk.runtime.forensics import jpeg_grid
    from kiosk.runtime.forensics.splice_features import (
        BAND_TILES,
        COMB_FREQUENCIES,
        DCT,
        TILE,
        _block_sums,
        _dct_coefficients,
    )

    rows = 2 * BAND_TILES + 3  # two whole bands and a partial one
    plane = np.random.default_rng(5).integers(0, 256, (rows * TILE, 3 * TILE)).astype(np.float32)
    plane[: TILE * 2] = 100.0  # flat blocks, not textured
    sums, textured = _block_sums(plane)
    box = cv2.boxFilter(
        plane.astype(np.float64), -1, (8, 8), normalize=False, anchor=(0, 0),
        borderType=cv2.BORDER_CONSTANT,
    )  # fmt: skip
    squares = cv2.boxFilter(
        plane.astype(np.float64) ** 2, -1, (8, 8), normalize=False, anchor=(0, 0),
        borderType=cv2.BORDER_CONSTANT,
    )  # fmt: skip
    assert np.array_equal(sums, np.rint(box).astype(np.int32))
    assert np.array_equal(textured, squares / 64 - (box / 64) ** 2 >= jpeg_grid.FLAT_STD**2)
    assert not textured[: TILE * 2 - 8, :-7].any() and textured[TILE * 3 :].all()
    blocks = plane.reshape(rows * 4, 8, 12, 8).transpose(0, 2, 1, 3) - 128.0
    whole = DCT @ blocks @ DCT.T
    u, v = np.array(COMB_FREQUENCIES).T
    assert np.array_equal(_dct_coefficients(plane), whole[..., u, v].transpose(2, 0, 1))
