"""Visual security index: extremes, the non-local property, ordering, parameters, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from kiosk.runtime.privacy.edges import edge_maps
from kiosk.runtime.privacy.encryption import encrypt
from kiosk.runtime.privacy.vsi import ABLATION, VsiParams, ablation, visual_security_index
from kiosk.runtime.privacy.zigzag import zigzag_order

KEY = bytes(range(32))
NONCE = bytes(16)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return cv2.resize(data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)


def test_identical_images_score_the_maximum(face):
    result = visual_security_index(face, face)
    assert result.vsi == pytest.approx(2.0)
    assert (result.rd, result.gs) == (pytest.approx(1.0), pytest.approx(1.0))
    encrypted = encrypt(face, KEY, "xor", 3, nonce=NONCE).pixels
    assert visual_security_index(face, encrypted).vsi < result.vsi


def test_unrelated_noise_scores_low(face):
    noise = np.random.default_rng(0).integers(0, 256, face.shape, dtype=np.uint8)
    result = visual_security_index(face, noise)
    assert result.vsi < 1.2
    assert result.gs < 0.9


def test_non_local_search_finds_moved_blocks():
    # 90 px -> blocks of floor(0.1 * 90) + 1 = 10 px: permute exactly those blocks.
    image = cv2.resize(data.astronaut(), (90, 90), interpolation=cv2.INTER_AREA)
    blocks = image.reshape(9, 10, 9, 10, 3).swapaxes(1, 2).reshape(81, 10, 10, 3)
    order = np.random.default_rng(1).permutation(81)
    shuffled = blocks[order].reshape(9, 9, 10, 10, 3).swapaxes(1, 2).reshape(90, 90, 3)
    result = visual_security_index(image, shuffled)
    assert result.block_size == 10
    np.testing.assert_allclose(result.block_rd, 1.0, atol=1e-5)


def test_block_shuffle_scores_above_noise_xor(face):
    xor = encrypt(face, KEY, "xor", 5, nonce=NONCE).pixels
    for strength in (1, 2, 3):
        shuffled = encrypt(face, KEY, "block_shuffle", strength, nonce=NONCE).pixels
        # ... and above the shuffled frame's own noise-XORed version.
        shuffled_xor = encrypt(shuffled, KEY, "xor", 5, nonce=NONCE).pixels
        score = visual_security_index(face, shuffled).vsi
        assert score > visual_security_index(face, xor).vsi
        assert score > visual_security_index(face, shuffled_xor).vsi


def test_vsi_falls_as_xor_strength_rises(face):
    scores = [
        visual_security_index(face, encrypt(face, KEY, "xor", s, nonce=NONCE).pixels).vsi
        for s in (1, 2, 3, 4, 5)
    ]
    assert scores == sorted(scores, reverse=True)


def test_grayscale_and_float_inputs(face):
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    assert visual_security_index(gray, gray).vsi == pytest.approx(2.0)
    as_float = face.astype(np.float64)
    assert visual_security_index(as_float, face).vsi == pytest.approx(2.0)


def test_ablation_matches_full_index(face):
    encrypted = encrypt(face, KEY, "block_shuffle", 3, nonce=NONCE).pixels
    variants = ablation(face, encrypted)
    assert list(variants) == list(ABLATION)
    full = visual_security_index(face, encrypted)
    assert variants["C4 +GS (full)"].vsi == pytest.approx(full.vsi)
    assert variants["C1 sim_A"].gs == 0.0
    assert variants["C1 sim_A"].vsi == pytest.approx(variants["C1 sim_A"].rd)


def test_parameters_change_the_block_size(face):
    assert visual_security_index(face, face, VsiParams(alpha=0.2)).block_size == 26
    assert visual_security_index(face, face).block_size == 13
    steerable = VsiParams(edge_filter="steerable", search_stride=0.5)
    assert visual_security_index(face, face, steerable).vsi == pytest.approx(2.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 0.7},
        {"beta": -1.0},
        {"gamma": 0.5},
        {"edge_filter": "sobel"},
        {"search_stride": 0.0},
        {"histogram_bins": 1},
        {"size": 16},
        {"size": 10_000},
    ],
)
def test_bad_parameters_are_rejected(kwargs):
    with pytest.raises(ValueError):
        VsiParams(**kwargs)


def test_bad_inputs_raise_clear_errors(face):
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    with pytest.raises(ValueError, match=r"128x128 color .* 64x64 color"):
        visual_security_index(face, face[:64, :64])
    with pytest.raises(ValueError, match="grayscale"):
        visual_security_index(gray, face)
    with pytest.raises(ValueError, match="at least 32 px"):
        visual_security_index(face[:20, :20], face[:20, :20])
    with pytest.raises(ValueError, match="numpy array"):
        visual_security_index([[0]], face)
    with pytest.raises(ValueError, match="within"):
        visual_security_index(face * 2.0, face)
    with pytest.raises(ValueError, match="8-bit"):
        visual_security_index(face.astype(bool), face)
    with pytest.raises(ValueError, match="HxW"):
        visual_security_index(face[..., :2], face[..., :2])


def test_fourier_argand_edges_resist_noise_better_than_steerable():
    noise = np.random.default_rng(2).integers(0, 256, (128, 128)).astype(np.float32)
    fourier_argand = edge_maps(noise, "fourier_argand").binary.mean()
    steerable = edge_maps(noise, "steerable").binary.mean()
    assert fourier_argand < 0.01 < steerable
    step = np.zeros((64, 64), np.float32)
    step[:, 32:] = 100.0
    for name in ("fourier_argand", "steerable"):
        columns = np.flatnonzero(edge_maps(step, name).binary[32])
        assert set(columns) <= {31, 32}


def test_zigzag_matches_jpeg():
    assert zigzag_order(8)[:10].tolist() == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]
