"""Diagnostic packages: perceptually encrypted frames that may leave the kiosk, and their inverse.

A frame is exported only if its encryption, scored with the visual security index on the pair
normalised to the calibrated size, is at most the gate's threshold; the others are refused and
only their index and score are listed. Threshold, size and the scheme/strength options that may
be offered at all are read from ``gate.json`` beside this module, which
``bench/privacy_validation.py --gate`` writes: the lowest VSI of any encryption (640x480 .. 12 MP
kiosk scenes) on which a detector-plus-landmarks attack still found the face, minus a margin.
Options are never looser than that file: a caller may only tighten the threshold. An engineer
holding the key restores the frames exactly.

Package = one zip file, written to a temporary name and renamed into place (atomic):
``manifest.json`` (format, creation time, key id, scheme, strength, threshold, VSI parameters,
and per frame: file names, shape, nonce, integrity MAC, vsi/rd/gs) plus ``frame_NNN.png`` (the
encrypted pixels) and, for the DCT schemes, ``frame_NNN.corr`` (encrypted correction data).
No original file names, faces, landmarks or other personal data are written or logged.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from kiosk.contract.errors import ConfigError
from kiosk.contract.fileio import write_atomically
from kiosk.runtime.privacy.encryption import (
    SCHEMES,
    STRENGTHS,
    EncryptedImage,
    decrypt,
    encrypt,
    key_id,
)
from kiosk.runtime.privacy.vsi import MIN_SIDE, VsiParams, visual_security_index

logger = logging.getLogger(__name__)

PACKAGE_FORMAT = "idkiosk-diag/1"
GATE_FILE = Path(__file__).with_name("gate.json")
_FRAME_NAME = re.compile(r"frame_\d{3,6}\.(png|corr)")
_MAX_FRAME_PIXELS = 50_000_000


@dataclass(frozen=True)
class Gate:
    """The calibrated export gate: VSI threshold, the size it was calibrated at, and the
    scheme -> strengths that may be offered (every other option failed the attack)."""

    threshold: float
    vsi_size: int
    export_options: Mapping[str, tuple[int, ...]]

    def allows(self, scheme: str, strength: int) -> bool:
        return strength in self.export_options.get(scheme, ())


def _gate_from(record: object, source: Path) -> Gate:
    fix = f"re-install the kiosk or run bench/privacy_validation.py --gate to rewrite {source}"
    try:
        threshold = float(record["threshold"])
        size = record["vsi_size"]
        options = {
            str(scheme): tuple(int(s) for s in strengths)
            for scheme, strengths in record["export_options"].items()
        }
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise ConfigError(f"export gate {source} is incomplete ({error!r}); {fix}") from None
    known = all(
        scheme in SCHEMES and strengths and set(strengths) <= set(STRENGTHS)
        for scheme, strengths in options.items()
    )
    if not (math.isfinite(threshold) and 0.0 < threshold < 2.0):
        raise ConfigError(f"export gate {source}: threshold must be in (0, 2); {fix}")
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_SIDE <= size <= 4096:
        raise ConfigError(f"export gate {source}: vsi_size must be a pixel count; {fix}")
    if not options or not known:
        raise ConfigError(f"export gate {source}: export_options name no known scheme; {fix}")
    return Gate(threshold, size, options)


@lru_cache(maxsize=4)
def load_gate(path: Path = GATE_FILE) -> Gate:
    """The gate written by the calibration benchmark; ConfigError if missing or invalid."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(
            f"export gate {path} is unreadable ({error}); re-install the kiosk"
        ) from None
    return _gate_from(record, Path(path))


def _default_threshold() -> float:
    return load_gate().threshold


def _default_vsi() -> VsiParams:
    return VsiParams(size=load_gate().vsi_size)


@dataclass(frozen=True)
class DiagDefaults:
    """Export settings for the config layer: full-strength keystream XOR and the calibrated gate.

    Refuses (ValueError) anything looser than the gate: an option it does not offer, a threshold
    above the calibrated one, or VSI parameters other than those the threshold was derived with.
    """

    scheme: str = "xor"
    strength: int = 5
    vsi_threshold: float = field(default_factory=_default_threshold)
    vsi: VsiParams = field(default_factory=_default_vsi)

    def __post_init__(self) -> None:
        gate = load_gate()
        if not gate.allows(self.scheme, self.strength):
            offered = "; ".join(f"{k} strength {list(v)}" for k, v in gate.export_options.items())
            raise ValueError(
                f"{self.scheme} strength {self.strength} is not offered for export (the attack "
                f"benchmark found it unsafe; see docs/privacy.md); use {offered}"
            )
        if not (math.isfinite(self.vsi_threshold) and 0.0 < self.vsi_threshold <= gate.threshold):
            raise ValueError(
                f"VSI threshold {self.vsi_threshold} is looser than the calibrated gate "
                f"{gate.threshold}; a threshold may only be lowered (stricter)"
            )
        if self.vsi != VsiParams(size=gate.vsi_size):
            raise ValueError(
                "the export gate was calibrated with the default VSI parameters at size "
                f"{gate.vsi_size}; other parameters would make its threshold meaningless"
            )


@dataclass(frozen=True)
class FrameVerdict:
    """Outcome of the gate for one input frame (by position, never by name)."""

    index: int
    vsi: float
    rd: float
    gs: float
    exported: bool


@dataclass(frozen=True)
class ExportSummary:
    """Where the package went (None when nothing passed) and every frame's verdict."""

    path: Path | None
    verdicts: tuple[FrameVerdict, ...]

    @property
    def exported(self) -> int:
        return sum(v.exported for v in self.verdicts)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def export_package(
    frames: Iterable[np.ndarray],
    key: bytes,
    out: Path,
    defaults: DiagDefaults | None = None,
) -> ExportSummary:
    """Encrypt ``frames``, keep those whose VSI passes the gate, write the package to ``out``.

    Frames (uint8 HxW or HxWx3) are taken one at a time, so a lazy iterable holds one decoded
    frame in memory. Nothing is written when no frame passes. Raises ValueError for bad frames,
    a bad key or an option the gate does not offer.
    """
    defaults = defaults or DiagDefaults()
    entries, files, verdicts = [], {}, []
    for index, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3):
            raise ValueError(f"frame {index}: expected an HxW or HxWx3 uint8 array")
        if frame.ndim == 3 and frame.shape[2] != 3:
            raise ValueError(f"frame {index}: expected 3 channels, got {frame.shape[2]}")
        encrypted = encrypt(frame, key, defaults.scheme, defaults.strength)
        score = visual_security_index(frame, encrypted.pixels, defaults.vsi)
        passed = score.vsi <= defaults.vsi_threshold
        verdicts.append(FrameVerdict(index, score.vsi, score.rd, score.gs, passed))
        if not passed:
            continue
        stem = f"frame_{len(entries):03d}"
        files[f"{stem}.png"] = _png(encrypted.pixels)
        if encrypted.correction:
            files[f"{stem}.corr"] = encrypted.correction
        entries.append(
            {
                "file": f"{stem}.png",
                "correction": f"{stem}.corr" if encrypted.correction else None,
                "shape": list(frame.shape),
                "nonce": encrypted.nonce.hex(),
                "plain_mac": encrypted.plain_mac,
                **score.as_dict(),
            }
        )
    if not verdicts:
        raise ValueError("no frames to export")
    refused = [v for v in verdicts if not v.exported]
    for verdict in refused:
        logger.warning(
            "frame %d refused: VSI %.3f above the export threshold %.3f",
            verdict.index,
            verdict.vsi,
            defaults.vsi_threshold,
        )
    if not entries:
        return ExportSummary(path=None, verdicts=tuple(verdicts))
    manifest = {
        "format": PACKAGE_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "key_id": key_id(key),
        "scheme": defaults.scheme,
        "strength": defaults.strength,
        "vsi_threshold": defaults.vsi_threshold,
        "vsi_params": asdict(defaults.vsi),
        "frames": entries,
        "refused": [{"index": v.index, "vsi": v.vsi} for v in refused],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=1), zipfile.ZIP_DEFLATED)
        for name, content in files.items():
            archive.writestr(name, content)
    write_atomically(Path(out), buffer.getvalue())
    logger.info("exported %d of %d frames to %s", len(entries), len(verdicts), out)
    return ExportSummary(path=Path(out), verdicts=tuple(verdicts))


def _read_png(content: bytes, name: str, shape: list[int]) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(content)) as image:
            if image.width * image.height > _MAX_FRAME_PIXELS:
                raise ValueError(f"{name} is too large")
            pixels = np.asarray(image)
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{name} in the package is not a readable PNG ({error})") from None
    if pixels.dtype != np.uint8 or list(pixels.shape) != shape:
        raise ValueError(f"{name} does not match the shape recorded in the manifest")
    return pixels


def read_package(path: Path) -> tuple[dict, list[EncryptedImage]]:
    """Manifest and encrypted frames of a package; ValueError if it is not a valid package."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            if manifest.get("format") != PACKAGE_FORMAT:
                raise ValueError(f"{path} is not an {PACKAGE_FORMAT} package")
            frames = []
            for entry in manifest["frames"]:
                names = [entry["file"]] + ([entry["correction"]] if entry["correction"] else [])
                if not all(isinstance(n, str) and _FRAME_NAME.fullmatch(n) for n in names):
                    raise ValueError(f"{path} lists an unexpected file name")
                pixels = _read_png(archive.read(entry["file"]), entry["file"], entry["shape"])
                correction = archive.read(entry["correction"]) if entry["correction"] else b""
                frames.append(
                    EncryptedImage(
                        pixels=pixels,
                        scheme=manifest["scheme"],
                        strength=manifest["strength"],
                        nonce=bytes.fromhex(entry["nonce"]),
                        key_id=manifest["key_id"],
                        plain_mac=entry["plain_mac"],
                        correction=correction,
                    )
                )
    except FileNotFoundError:
        raise ValueError(f"package {path} does not exist") from None
    except (zipfile.BadZipFile, KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a valid diagnostic package ({error})") from None
    return manifest, frames


def decrypt_package(path: Path, key: bytes, out_dir: Path) -> list[Path]:
    """Restore every frame of a package into ``out_dir`` as frame_NNN.png; ValueError on a wrong
    key or damaged package (checked for all frames before anything is written)."""
    manifest, frames = read_package(path)
    restored = [decrypt(frame, key) for frame in frames]
    written = []
    for entry, pixels in zip(manifest["frames"], restored, strict=True):
        target = Path(out_dir) / entry["file"]
        write_atomically(target, _png(pixels))
        written.append(target)
    logger.info("decrypted %d frames into %s", len(written), out_dir)
    return written
