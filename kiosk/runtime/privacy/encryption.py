"""Keyed, reversible perceptual encryption of 8-bit frames.

Perceptual encryption hides what an image shows while keeping an image (same size, 8-bit) that
tools can handle and the visual security index can judge. Five schemes, each with strength
levels 1 (weakest) to 5 (strongest), span the leakage range the export gate must tell apart:

=============== ====================================== ============================
scheme          strength controls                      levels 1..5
=============== ====================================== ============================
block_shuffle   block side (px), chaotic permutation   64, 32, 16, 8, 4
xor             low bit-planes XORed with a keystream  3, 5, 6, 7, 8
dct_sign        coefficients per 8x8 DCT block whose   2, 5, 14, 63, 64
                signs are flipped at random: AC in
                zigzag order, the DC last
dct_perm        AC coefficients (after DC, zigzag)     3, 9, 20, 35, 63
                permuted within each 8x8 block
thumbnail_leak  cell side (px) whose pixels are        2, 3, 4, 6, 8
                shuffled in place: block means stay,
                a thumbnail leaks by design
=============== ====================================== ============================

Keys are 32 random bytes. Every keystream, permutation and sign pattern is derived from the key,
a per-frame random nonce (stored beside the frame, not secret), the scheme, the frame shape and
a purpose label with SHAKE-256, so two frames never share a keystream and the derivation does not
depend on numpy's generator versions. The block shuffle draws its permutation from a logistic map
(chaotic, as in PEID's enc09) seeded from that stream, iterated in Python floats so every IEEE-754
platform produces the same orbit.

Exactness: block_shuffle, xor and thumbnail_leak are permutations/XORs of the 8-bit values and
invert exactly. The DCT schemes round and clip their spatial output to 8 bits; the residual needed
for an exact inverse travels as a *correction* blob (zlib, then XOR with the keystream, so it is
ciphertext; only its length is visible). Pixels outside a scheme's block grid (a border narrower
than one block) are XORed with the full keystream. decrypt() checks the key id first and an
HMAC-SHA256 of the plain frame last, so a wrong key or a damaged file raises ValueError instead
of returning garbage.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiosk.runtime.privacy.zigzag import zigzag_order

logger = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 16
STRENGTHS = (1, 2, 3, 4, 5)
_DOMAIN = b"idkiosk-privacy-v1"
_DCT_BLOCK = 8


@dataclass(frozen=True)
class SchemeSpec:
    """What a scheme's strength level means (one parameter per level 1..5)."""

    name: str
    parameter: str
    levels: tuple[int, ...]
    exact: bool


SCHEMES: dict[str, SchemeSpec] = {
    spec.name: spec
    for spec in (
        SchemeSpec("block_shuffle", "block side in px", (64, 32, 16, 8, 4), True),
        SchemeSpec("xor", "low bit-planes XORed", (3, 5, 6, 7, 8), True),
        SchemeSpec("dct_sign", "sign-flipped coefficients per 8x8", (2, 5, 14, 63, 64), False),
        SchemeSpec("dct_perm", "permuted AC coefficients per 8x8", (3, 9, 20, 35, 63), False),
        SchemeSpec("thumbnail_leak", "cell side in px (pixels shuffled)", (2, 3, 4, 6, 8), True),
    )
}


@dataclass(frozen=True)
class EncryptedImage:
    """A perceptually encrypted frame and everything but the key needed to invert it.

    ``pixels`` is what a viewer (and the visual security index) sees. ``correction`` is empty
    for the exact schemes and ciphertext for the DCT ones.
    """

    pixels: np.ndarray
    scheme: str
    strength: int
    nonce: bytes
    key_id: str
    plain_mac: str
    correction: bytes = b""


# --- keys -----------------------------------------------------------------------------------


def generate_key() -> bytes:
    """Fresh random key."""
    return os.urandom(KEY_BYTES)


def write_key(path: Path) -> bytes:
    """Create a new key file readable by its owner only (mode 0600); never overwrites."""
    key = generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValueError(f"key file {path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def read_key(path: Path) -> bytes:
    """Read a key file; ValueError if it is missing or not exactly 32 bytes."""
    try:
        key = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read key file {path}: {error.strerror}") from None
    _check_key(key)
    if os.name == "posix" and Path(path).stat().st_mode & 0o077:
        logger.warning("key file %s is readable by other users; chmod 600 it", path)
    return key


def key_id(key: bytes) -> str:
    """Public fingerprint of a key, stored with each frame to detect a wrong key early."""
    _check_key(key)
    return hashlib.sha256(_DOMAIN + b"/key-id" + key).hexdigest()[:16]


def _check_key(key: object) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        size = len(key) if isinstance(key, bytes) else type(key).__name__
        raise ValueError(f"a key must be exactly {KEY_BYTES} bytes, got {size}")


# --- keyed randomness -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Keyed:
    """Key material bound to one frame: every draw is labelled with its purpose."""

    key: bytes
    nonce: bytes
    context: str

    def stream(self, purpose: str, nbytes: int) -> bytes:
        shake = hashlib.shake_256(_DOMAIN)
        for part in (self.key, self.nonce, f"{self.context}/{purpose}".encode()):
            shake.update(len(part).to_bytes(4, "big") + part)
        return shake.digest(nbytes)

    def uint8(self, purpose: str, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return np.frombuffer(self.stream(purpose, count), dtype=np.uint8).reshape(shape)

    def permutations(self, purpose: str, count: int, length: int) -> np.ndarray:
        """``count`` independent random permutations of ``length`` items (rows)."""
        raw = np.frombuffer(self.stream(purpose, 8 * count * length), dtype="<u8")
        return np.argsort(raw.reshape(count, length), axis=1, kind="stable")

    def chaotic_permutation(self, purpose: str, length: int) -> np.ndarray:
        """Permutation from the ranks of a logistic-map orbit x <- mu x (1 - x)."""
        seed = int.from_bytes(self.stream(purpose, 16), "big")
        x = 0.1 + 0.8 * (seed >> 72) / float(1 << 56)
        mu = 3.99 + 0.0099 * (seed & ((1 << 56) - 1)) / float(1 << 56)
        for _ in range(500):  # leave the transient
            x = mu * x * (1.0 - x)
        orbit = []
        for _ in range(length):
            x = mu * x * (1.0 - x)
            orbit.append(x)
        return np.argsort(np.asarray(orbit), kind="stable")


# --- block geometry -------------------------------------------------------------------------


def _to_cells(region: np.ndarray, cell: int) -> np.ndarray:
    """(H, W, C) -> (rows * cols, cell, cell, C) for H, W multiples of ``cell``."""
    h, w, c = region.shape
    tiles = region.reshape(h // cell, cell, w // cell, cell, c).swapaxes(1, 2)
    return tiles.reshape(-1, cell, cell, c)


def _from_cells(cells: np.ndarray, h: int, w: int) -> np.ndarray:
    cell, c = cells.shape[1], cells.shape[3]
    tiles = cells.reshape(h // cell, w // cell, cell, cell, c).swapaxes(1, 2)
    return tiles.reshape(h, w, c)


def _on_grid(
    image: np.ndarray,
    cell: int,
    keyed: _Keyed,
    transform: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Apply ``transform`` to the cells of the block grid; XOR the leftover border strips."""
    h, w = image.shape[:2]
    gh, gw = h - h % cell, w - w % cell
    out = image ^ keyed.uint8("border", image.shape)
    cells = transform(_to_cells(image[:gh, :gw], cell))
    out[:gh, :gw] = _from_cells(cells, gh, gw)
    return out


# --- schemes --------------------------------------------------------------------------------


def _permute(values: np.ndarray, order: np.ndarray, axis: int, inverse: bool) -> np.ndarray:
    """Gather ``values`` along ``axis`` in ``order`` (broadcast over other axes), or undo it."""
    if not inverse:
        return np.take_along_axis(values, order, axis=axis)
    restored = np.empty_like(values)
    np.put_along_axis(restored, order, values, axis=axis)
    return restored


def _block_shuffle(image: np.ndarray, side: int, keyed: _Keyed, inverse: bool) -> np.ndarray:
    def shuffle(cells: np.ndarray) -> np.ndarray:
        order = keyed.chaotic_permutation("blocks", len(cells))
        return _permute(cells, order.reshape(-1, 1, 1, 1), 0, inverse)

    return _on_grid(image, side, keyed, shuffle)


def _xor(image: np.ndarray, bits: int, keyed: _Keyed, inverse: bool) -> np.ndarray:
    del inverse  # XOR is its own inverse
    mask = np.uint8((1 << bits) - 1)
    return image ^ (keyed.uint8("xor", image.shape) & mask)


def _thumbnail_leak(image: np.ndarray, side: int, keyed: _Keyed, inverse: bool) -> np.ndarray:
    def scramble(cells: np.ndarray) -> np.ndarray:
        n, c = len(cells), cells.shape[3]
        flat = cells.reshape(n, side * side, c)
        order = keyed.permutations("pixels", n, side * side)[..., None]
        return _permute(flat, order, 1, inverse).reshape(cells.shape)

    return _on_grid(image, side, keyed, scramble)


def _dct_transform(
    cells: np.ndarray, count: int, keyed: _Keyed, scheme: str, inverse: bool
) -> np.ndarray:
    """Sign flips or AC permutation on level-shifted 8x8 DCT blocks (float in, float out)."""
    from scipy import fft as sp_fft  # on use: other commands skip its ~20 MB

    n, size, _, c = cells.shape
    coeffs = sp_fft.dctn(cells.astype(np.float64) - 127.5, axes=(1, 2), norm="ortho")
    coeffs = coeffs.transpose(0, 3, 1, 2).reshape(n * c, size * size)
    zigzag = zigzag_order(size)
    if scheme == "dct_sign":
        # AC first: the DC (block mean) is the thumbnail and goes only at the top level. The
        # level shift makes flipping every coefficient the negative image 255 - x: in range.
        positions = np.roll(zigzag, -1)[:count]
        bits = keyed.uint8("signs", (n * c, count)) & 1
        coeffs[:, positions] *= 1.0 - 2.0 * bits
    else:
        positions = zigzag[1 : 1 + count]
        order = keyed.permutations("coefficients", n * c, count)
        coeffs[:, positions] = _permute(coeffs[:, positions], order, 1, inverse)
    coeffs = coeffs.reshape(n, c, size, size).transpose(0, 2, 3, 1)
    return sp_fft.idctn(coeffs, axes=(1, 2), norm="ortho") + 127.5


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _dct_visible(
    image: np.ndarray, spec: SchemeSpec, level: int, keyed: _Keyed, inverse: bool
) -> np.ndarray:
    def transform(cells: np.ndarray) -> np.ndarray:
        return _to_uint8(_dct_transform(cells, level, keyed, spec.name, inverse))

    return _on_grid(image, _DCT_BLOCK, keyed, transform)


_EXACT = {"block_shuffle": _block_shuffle, "xor": _xor, "thumbnail_leak": _thumbnail_leak}


# --- public API -----------------------------------------------------------------------------


def _check_frame(image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"frames must be uint8 numpy arrays, got {kind}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"frames must be HxW or HxWx1/3/4, got shape {image.shape}")
    if image.size == 0:
        raise ValueError("frame is empty")
    return image


def _spec(scheme: str, strength: int) -> tuple[SchemeSpec, int]:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if isinstance(strength, bool) or not isinstance(strength, (int, np.integer)):
        raise ValueError(f"strength must be an integer 1..5, got {strength!r}")
    if strength not in STRENGTHS:
        raise ValueError(f"strength must be one of {STRENGTHS}, got {strength}")
    spec = SCHEMES[scheme]
    return spec, spec.levels[int(strength) - 1]


def _check_fits(image: np.ndarray, spec: SchemeSpec, strength: int, level: int) -> None:
    """A frame must hold at least one block of the scheme."""
    if spec.name in ("block_shuffle", "thumbnail_leak"):
        side = level
    else:
        side = 1 if spec.name == "xor" else _DCT_BLOCK
    if min(image.shape[:2]) < side:
        raise ValueError(
            f"frame is {image.shape[1]}x{image.shape[0]} px, smaller than one {side} px block "
            f"of {spec.name} strength {strength}"
        )


def _mac(key: bytes, image: np.ndarray) -> str:
    header = f"{image.shape}".encode()
    return hmac.new(key, _DOMAIN + b"/mac" + header + image.tobytes(), hashlib.sha256).hexdigest()


def _apply(
    image3: np.ndarray, spec: SchemeSpec, level: int, keyed: _Keyed, inverse: bool
) -> np.ndarray:
    if spec.exact:
        return _EXACT[spec.name](image3, level, keyed, inverse)
    return _dct_visible(image3, spec, level, keyed, inverse)


def encrypt(
    image: np.ndarray,
    key: bytes,
    scheme: str = "xor",
    strength: int = 5,
    *,
    nonce: bytes | None = None,
) -> EncryptedImage:
    """Perceptually encrypt an 8-bit frame (HxW or HxWxC); ValueError on bad input.

    ``nonce`` defaults to fresh random bytes; pass one only for reproducible experiments.
    """
    image = _check_frame(image)
    _check_key(key)
    spec, level = _spec(scheme, strength)
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    _check_fits(image, spec, strength, level)
    keyed = _Keyed(key, nonce, f"{scheme}/{strength}/{image.shape}")
    image3 = image.reshape(image.shape[0], image.shape[1], -1)
    visible = _apply(image3, spec, level, keyed, inverse=False)
    correction = b""
    if not spec.exact:
        approx = _apply(visible, spec, level, keyed, inverse=True)
        residual = image3.astype(np.int16) - approx.astype(np.int16)
        packed = zlib.compress(residual.tobytes(), 6)
        correction = bytes(
            np.frombuffer(packed, np.uint8) ^ keyed.uint8("correction", (len(packed),))
        )
    return EncryptedImage(
        pixels=visible.reshape(image.shape),
        scheme=scheme,
        strength=int(strength),
        nonce=nonce,
        key_id=key_id(key),
        plain_mac=_mac(key, image),
        correction=correction,
    )


def decrypt(encrypted: EncryptedImage, key: bytes) -> np.ndarray:
    """Invert :func:`encrypt` exactly; ValueError for a wrong key or damaged data."""
    _check_key(key)
    if encrypted.key_id != key_id(key):
        raise ValueError(
            f"wrong key: the frame was encrypted with key id {encrypted.key_id}, "
            f"this key has id {key_id(key)}"
        )
    pixels = _check_frame(encrypted.pixels)
    spec, level = _spec(encrypted.scheme, encrypted.strength)
    _check_fits(pixels, spec, encrypted.strength, level)
    keyed = _Keyed(key, encrypted.nonce, f"{spec.name}/{encrypted.strength}/{pixels.shape}")
    pixels3 = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
    plain = _apply(pixels3, spec, level, keyed, inverse=True)
    if not spec.exact:
        blob = np.frombuffer(encrypted.correction, np.uint8)
        try:
            raw = zlib.decompress(bytes(blob ^ keyed.uint8("correction", (len(blob),))))
        except zlib.error:
            raise ValueError("the correction data of this frame is damaged") from None
        if len(raw) != 2 * plain.size:
            raise ValueError("the correction data does not fit this frame")
        residual = np.frombuffer(raw, np.int16).reshape(plain.shape)
        plain = (plain.astype(np.int16) + residual).astype(np.uint8)
    plain = plain.reshape(pixels.shape)
    if not hmac.compare_digest(_mac(key, plain), encrypted.plain_mac):
        raise ValueError("decrypted frame fails its integrity check: the data was altered")
    return plain
