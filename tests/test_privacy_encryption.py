"""Perceptual encryption: exact round trips, keys, nonces, integrity and bad input."""

from __future__ import annotations

import os
import stat

import cv2
import numpy as np
import pytest
from skimage import data

from kiosk.runtime.privacy.encryption import (
    SCHEMES,
    STRENGTHS,
    EncryptedImage,
    decrypt,
    encrypt,
    generate_key,
    key_id,
    read_key,
    write_key,
)

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    # 70x67: not a multiple of any block size, so the border handling is exercised too.
    return cv2.resize(data.astronaut(), (67, 70), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_round_trip_is_exact_for_every_scheme_and_strength(frame, scheme):
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    for strength in STRENGTHS:
        for image in (frame, gray, frame[..., :1]):
            encrypted = encrypt(image, KEY, scheme, strength)
            assert encrypted.pixels.shape == image.shape
            assert encrypted.pixels.dtype == np.uint8
            assert not np.array_equal(encrypted.pixels, image)
            np.testing.assert_array_equal(decrypt(encrypted, KEY), image)
        assert bool(encrypted.correction) != SCHEMES[scheme].exact


def test_block_shuffle_keeps_the_pixels(frame):
    encrypted = encrypt(frame[:64, :64], KEY, "block_shuffle", 3)
    assert sorted(encrypted.pixels.ravel()) == sorted(frame[:64, :64].ravel())


def test_nonce_makes_every_encryption_different(frame):
    first, second = encrypt(frame, KEY, "xor", 5), encrypt(frame, KEY, "xor", 5)
    assert first.nonce != second.nonce
    assert not np.array_equal(first.pixels, second.pixels)
    fixed = bytes(16)
    same = encrypt(frame, KEY, "xor", 5, nonce=fixed), encrypt(frame, KEY, "xor", 5, nonce=fixed)
    np.testing.assert_array_equal(same[0].pixels, same[1].pixels)


def test_wrong_key_is_refused(frame):
    encrypted = encrypt(frame, KEY, "dct_sign", 3)
    with pytest.raises(ValueError, match="wrong key"):
        decrypt(encrypted, generate_key())


def test_altered_data_fails_the_integrity_check(frame):
    encrypted = encrypt(frame, KEY, "block_shuffle", 4)
    pixels = encrypted.pixels.copy()
    pixels[0, 0, 0] ^= 1
    with pytest.raises(ValueError, match="integrity"):
        decrypt(EncryptedImage(**{**encrypted.__dict__, "pixels": pixels}), KEY)
    dct = encrypt(frame, KEY, "dct_perm", 2)
    with pytest.raises(ValueError, match="correction"):
        decrypt(EncryptedImage(**{**dct.__dict__, "correction": b"garbage"}), KEY)


def test_key_files(tmp_path):
    path = tmp_path / "diag.key"
    key = write_key(path)
    assert len(key) == 32 and read_key(path) == key
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="already exists"):
        write_key(path)
    (tmp_path / "short.key").write_bytes(b"too short")
    with pytest.raises(ValueError, match="32 bytes"):
        read_key(tmp_path / "short.key")
    with pytest.raises(ValueError, match="cannot read"):
        read_key(tmp_path / "missing.key")
    assert key_id(key) != key_id(KEY)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rot13", 3), "unknown scheme"),
        (("xor", 0), "strength"),
        (("xor", 2.5), "strength"),
        (("xor", True), "strength"),
    ],
)
def test_bad_scheme_or_strength(frame, args, message):
    with pytest.raises(ValueError, match=message):
        encrypt(frame, KEY, *args)


def test_bad_frames_and_keys(frame):
    with pytest.raises(ValueError, match="uint8"):
        encrypt(frame.astype(np.float32), KEY)
    with pytest.raises(ValueError, match="shape"):
        encrypt(frame[..., :2], KEY)
    with pytest.raises(ValueError, match="32 bytes"):
        encrypt(frame, b"short")
    with pytest.raises(ValueError, match="smaller than one 64 px block"):
        encrypt(frame[:40, :40], KEY, "block_shuffle", 1)
    with pytest.raises(ValueError, match="nonce"):
        encrypt(frame, KEY, nonce=b"1")
