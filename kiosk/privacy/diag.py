"""Diagnostic packages: perceptually encrypted frames that may leave the kiosk, and their inverse.

A frame is exported only if its encryption scores a visual security index at most
``DEFAULT_VSI_THRESHOLD``; the others are refused and only their index and score are listed.
That threshold comes from ``bench/privacy_validation.py`` (reports/privacy/threshold.json): the
lowest VSI of any validation encryption on which the face was still detected or its landmarks
still readable, minus a safety margin. An engineer holding the key restores the frames exactly.

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
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from kiosk.fileio import write_atomically
from kiosk.privacy.encryption import EncryptedImage, decrypt, encrypt, key_id
from kiosk.privacy.vsi import VsiParams, visual_security_index

logger = logging.getLogger(__name__)

PACKAGE_FORMAT = "idkiosk-diag/1"
# From reports/privacy/threshold.json (bench/privacy_validation.py); see docs/privacy.md.
DEFAULT_VSI_THRESHOLD = 1.252
_FRAME_NAME = re.compile(r"frame_\d{3,6}\.(png|corr)")
_MAX_FRAME_PIXELS = 50_000_000


@dataclass(frozen=True)
class DiagDefaults:
    """Export defaults for the config layer: full-strength keystream XOR and the derived gate."""

    scheme: str = "xor"
    strength: int = 5
    vsi_threshold: float = DEFAULT_VSI_THRESHOLD
    vsi: VsiParams = field(default_factory=VsiParams)


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
    frames: Sequence[np.ndarray],
    key: bytes,
    out: Path,
    defaults: DiagDefaults | None = None,
) -> ExportSummary:
    """Encrypt ``frames``, keep those whose VSI passes the gate, write the package to ``out``.

    Frames must be uint8 HxW or HxWx3. Nothing is written when no frame passes. Raises
    ValueError for bad frames, a bad key or an unknown scheme/strength.
    """
    defaults = defaults or DiagDefaults()
    if not frames:
        raise ValueError("no frames to export")
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
    logger.info("exported %d of %d frames to %s", len(entries), len(frames), out)
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
