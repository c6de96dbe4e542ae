"""A model bundle's `manifest.json`: the only code that reads, writes, validates and signs it.

A bundle is a directory holding `manifest.json`, the model files it lists and, once signed,
`manifest.sig`. The manifest names every model with its file, size, sha256, architecture, input
shape and threshold, so signing the manifest's exact bytes (Ed25519) covers every model file too.

The schema refuses what used to slip through or crash: a threshold that is NaN, infinite or so
close to 0 or 1 that it turns a check on or off for every face (`score >= NaN` is never true),
a threshold that differs from the one its own metrics were measured at (a hand edit), unknown
architectures, malformed shapes and hashes, duplicate names, files outside the bundle, special
files (`/dev/zero`, FIFOs) and files larger than the manifest says. Every refusal is a
`ManifestError` (a `ModelError`, so the kiosk reports it as "checks unavailable") naming the
file and the field.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from kiosk.contract.errors import ModelError
from kiosk.contract.fileio import write_atomically

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# cryptography (~25 ms to import) is imported by the functions that sign or verify, so a bundle
# loaded without a public key (`kiosk check` in a checkout) never pays for it (issue 16).

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_MANIFEST_BYTES = 1 << 20  # the shipped manifest is ~15 kB
MAX_SIGNATURE_BYTES = 4096
_MAX_KEY_BYTES = 64 << 10
# dlib's stock 68-point predictor (100 MB) is the largest model a bundle may reasonably carry.
MAX_MODEL_BYTES = 128 << 20
# Every threshold is compared with a sigmoid score (`score >= threshold` flags the face). Near 1
# a check flags almost nothing (it is silently off), near 0 it flags everything; the shipped
# thresholds lie in 0.28..0.95, chosen on DET curves or at a 2 % false-alarm rate.
THRESHOLD_MIN = 0.01
THRESHOLD_MAX = 0.99
# Thresholds written to metrics are rounded to 6 decimals (training/metrics.py).
THRESHOLD_TOLERANCE = 1e-6
# Metrics keys that record the threshold an operating point was measured at.
_RECORDED_THRESHOLD_KEYS = ("threshold", "at_threshold_threshold")
# Architecture families of the shipped models; an entry's `architecture` is one of these, alone
# or followed by a space or comma and details (`SqueezeVGG (2 input channels)`).
KNOWN_ARCHITECTURES = (
    "SqueezeMiniVGG",  # training/nets.py: eyes_closed, mouth_open
    "SqueezeVGG",  # training/nets.py: veil
    "ElaNet",  # training/tamper/train.py: tamper_ela
    "kv JPEG detector",  # training/jpeg/nets.py: jpeg_history
    "constrained JPEG detector",  # training/jpeg/nets.py (Bayar & Stamm)
    "MTCNN PNET",  # training/export_mtcnn.py
    "MTCNN RNET",
    "MTCNN ONET",
    "YuNet",  # OpenCV Zoo ONNX run by cv2.FaceDetectorYN (kiosk/runtime/vision/yunet.py)
    "BlazeFace",  # MediaPipe TFLite on LiteRT (kiosk/runtime/vision/blazeface.py): fallback
    "SRCNN-style residual generator",  # training/sr/nets.py: sr_x4
    "dlib ensemble of regression trees",  # training/landmarks.py: shape_predictor_mtcnn
    "gradient-boosted trees",  # training/tamper/splice.py: splice_jpeg (numpy at run time)
    "MorphCNN",  # training/morph/cnn.py: morph_cnn (fused with the morph trees)
    "SpliceTileCnn",  # training/tamper/splice_gpu.py + splice_cnn.py: splice_cnn (fused with the trees)
)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_HEX = frozenset("0123456789abcdef")
_CHUNK = 1 << 20


class ManifestError(ModelError):
    """A bundle whose manifest, files or signature cannot be trusted; the message says why."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest, as `_entry` checked it. Fields beyond these (metrics,
    provenance...) are kept as-is in `model_extra`."""

    file: str  # path of the model file, relative to the bundle
    sha256: str  # 64 lowercase hex digits of the file's SHA-256
    bytes: int  # the file's exact size
    architecture: str  # one of KNOWN_ARCHITECTURES, optionally with details
    # The input tensor's shape: positive sizes, -1 for a size the model accepts at any value
    # (fully convolutional); empty for a model without a tensor input (dlib).
    input_shape: tuple[int, ...]
    quantization: str
    threshold: float | None = None  # score >= threshold flags the face
    model_extra: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def extra(self) -> dict[str, Any]:
        """Every field except file, sha256, input_shape, quantization and threshold (a copy)."""
        return copy.deepcopy(
            {"bytes": self.bytes, "architecture": self.architecture, **self.model_extra}
        )


class _Refused(ValueError):
    """A field's value refused: the message, and the part of it at fault when not all of it."""

    def __init__(self, message: str, part: str = "", value: Any = None) -> None:
        super().__init__(message)
        self.part, self.value = part, value


_NO_VALUE = object()


def _problem(where: str, message: str, value: Any = _NO_VALUE) -> str:
    """`models.veil.threshold: Input should be a finite number (got nan)`."""
    if value is _NO_VALUE:
        return f"{where}: {message}"
    got = repr(value)
    return f"{where}: {message} (got {got if len(got) <= 60 else got[:57] + '...'})"


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Refused("Input should be a valid string")
    return value


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Refused("Input should be a valid integer")
    return value


def _file(value: Any) -> str:
    value = _string(value)
    path = PurePosixPath(value)
    if not value or "\\" in value or "\0" in value or path.name in ("", ".", ".."):
        raise _Refused("must be a file name inside the bundle")
    if path.is_absolute() or ".." in path.parts:
        raise _Refused("must be a relative path inside the bundle (no leading /, no ..)")
    return value


def _sha256(value: Any) -> str:
    value = _string(value)
    if len(value) != 64 or not set(value) <= _HEX:
        raise _Refused("must be 64 lowercase hex digits")
    return value


def _size(value: Any) -> int:
    if _integer(value) < 1:
        raise _Refused("Input should be greater than or equal to 1")
    if value > MAX_MODEL_BYTES:
        raise _Refused(f"Input should be less than or equal to {MAX_MODEL_BYTES}")
    return value


def _architecture(value: Any) -> str:
    value = _string(value)
    if not any(
        value == known or value.startswith((f"{known} ", f"{known},"))
        for known in KNOWN_ARCHITECTURES
    ):
        raise _Refused(
            f"unknown architecture; known: {', '.join(KNOWN_ARCHITECTURES)} (add a new one "
            "to KNOWN_ARCHITECTURES in kiosk/contract/manifest.py with the code that runs it)"
        )
    return value


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise _Refused("Input should be a valid tuple")
    for index, size in enumerate(value):
        try:
            _integer(size)
        except _Refused as exc:
            raise _Refused(str(exc), str(index), size) from None
    if any(size < 1 and size != -1 for size in value):
        raise _Refused("sizes must be positive (or -1 for any size)")
    return tuple(value)


def _quantization(value: Any) -> str:
    if not _string(value):
        raise _Refused("String should have at least 1 character")
    return value


def _threshold(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _Refused("Input should be a valid number")
    if not math.isfinite(value):
        raise _Refused("Input should be a finite number")
    if not THRESHOLD_MIN <= value <= THRESHOLD_MAX:
        raise _Refused(
            f"must lie in [{THRESHOLD_MIN}, {THRESHOLD_MAX}]: a threshold near 1 turns the "
            "check off, near 0 it rejects every face"
        )
    return float(value)


# ModelEntry's fields in order, each with its check; only the threshold may be left out.
_FIELDS: dict[str, Callable[[Any], Any]] = {
    "file": _file,
    "sha256": _sha256,
    "bytes": _size,
    "architecture": _architecture,
    "input_shape": _shape,
    "quantization": _quantization,
    "threshold": _threshold,
}


def _entry(where: str, raw: Any, problems: list[str]) -> ModelEntry | None:
    """The entry `raw` checked field by field, then as a whole; None when it has problems (each
    added to `problems`)."""
    if not isinstance(raw, dict):
        problems.append(_problem(where, "Input should be a valid dictionary", raw))
        return None
    values: dict[str, Any] = {}
    found = len(problems)
    for name, check in _FIELDS.items():
        if name not in raw:
            if name != "threshold":
                problems.append(_problem(f"{where}.{name}", "Field required"))
            continue
        try:
            values[name] = check(raw[name])
        except _Refused as exc:
            key = f"{where}.{name}" + (f".{exc.part}" if exc.part else "")
            problems.append(_problem(key, str(exc), exc.value if exc.part else raw[name]))
    if len(problems) > found:
        return None
    entry = ModelEntry(**values, model_extra={k: v for k, v in raw.items() if k not in _FIELDS})
    if entry.file.endswith(".tflite") and not entry.input_shape:
        problems.append(_problem(where, "input_shape: a TFLite model must state its input shape"))
        return None
    if entry.threshold is not None:
        for key, recorded in _recorded_thresholds(entry.model_extra.get("metrics"), "metrics"):
            if abs(recorded - entry.threshold) > THRESHOLD_TOLERANCE:
                problems.append(
                    _problem(
                        where,
                        f"threshold {entry.threshold} differs from {key} = {recorded}, the "
                        "threshold its metrics were measured at: re-run the export instead of "
                        "editing the threshold by hand",
                    )
                )
                return None
    return entry


def _recorded_thresholds(metrics: Any, where: str) -> Iterator[tuple[str, float]]:
    """(key path, value) of each threshold an operating point in `metrics` was measured at."""
    if not isinstance(metrics, dict):
        return
    for key, value in metrics.items():
        path = f"{where}.{key}"
        if isinstance(value, dict):
            yield from _recorded_thresholds(value, path)
        elif key in _RECORDED_THRESHOLD_KEYS and type(value) in (int, float):
            yield path, float(value)


def _models(data: dict[str, Any]) -> tuple[dict[str, ModelEntry], list[str]]:
    """The whole file: a non-empty `models` object of valid entries (other top-level keys are
    allowed); (the entries, the problems found)."""
    if "models" not in data:
        return {}, [_problem("models", "Field required")]
    models = data["models"]
    if not isinstance(models, dict):
        return {}, [_problem("models", "Input should be a valid dictionary", models)]
    for name in models:
        if not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS:
            return {}, [
                _problem("models", f"model name {name!r} must be 1-64 characters of a-z, 0-9 and _")
            ]
    if not models:
        return {}, [_problem("models", "must list at least 1 item (a model)")]
    problems: list[str] = []
    entries = {name: _entry(f"models.{name}", raw, problems) for name, raw in models.items()}
    return {name: entry for name, entry in entries.items() if entry is not None}, problems


@dataclass(frozen=True)
class Manifest:
    """A validated manifest and the exact bytes it was parsed from (what a signature covers)."""

    path: Path
    raw_bytes: bytes
    sha256: str
    models: dict[str, ModelEntry]


def load_manifest(bundle_dir: Path) -> Manifest:
    """Read and validate `bundle_dir/manifest.json`; raises ManifestError naming file and field."""
    path = Path(bundle_dir) / MANIFEST
    raw = _read_regular(
        path,
        MAX_MANIFEST_BYTES,
        f"model manifest {path}",
        missing=f"no model manifest at {path}: run `make models` or point [models] dir in the "
        "config at a deployed bundle",
    )
    return _parse(path, raw)


def _parse(path: Path, raw: bytes) -> Manifest:
    data = _decode(path, raw)
    if not isinstance(data, dict):
        raise ManifestError(f"model manifest {path}: must be a JSON object with a `models` key")
    models, problems = _models(data)
    if problems:
        raise ManifestError(f"model manifest {path}: {_describe(problems)}")
    return Manifest(path, raw, hashlib.sha256(raw).hexdigest(), models)


def _decode(path: Path, raw: bytes) -> Any:
    """The JSON value of a manifest file: UTF-8, every object's keys unique."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"model manifest {path} is not UTF-8 text (byte {exc.start}): rebuild the bundle"
        ) from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKeyError as exc:
        raise ManifestError(f"model manifest {path}: {exc}: names must be unique") from None
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"model manifest {path} is not valid JSON: {exc}") from None


class _DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a repeated key would silently keep only the last entry."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def _describe(problems: list[str], limit: int = 5) -> str:
    """A few of the problems, and what to do."""
    more = len(problems) - limit
    return (
        "; ".join(problems[:limit])
        + (f"; and {more} more" if more > 0 else "")
        + "; fix the manifest (or re-run the export that writes it) and rebuild the bundle"
    )


def _open_regular(path: Path, what: str, missing: str = "", advice: str = "") -> BinaryIO:
    """Open a regular file for reading. Directories, devices and FIFOs are refused without
    blocking (O_NONBLOCK: opening a FIFO would otherwise wait for a writer). `what` names the
    file in messages, `missing` replaces the message for a file that does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if missing and isinstance(exc, FileNotFoundError):
            raise ManifestError(missing) from None
        raise ManifestError(f"{what} is missing or unreadable ({exc.strerror}){advice}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ManifestError(f"{what} is not a regular file (a directory, device or FIFO?){advice}")
    return os.fdopen(fd, "rb")


def _read_regular(path: Path, limit: int, what: str, missing: str = "") -> bytes:
    """A regular file's bytes; a file larger than `limit` is refused after reading limit + 1."""
    with _open_regular(path, what, missing) as handle:
        content = handle.read(limit + 1)
    if len(content) > limit:
        raise ManifestError(f"{what} is larger than {limit} bytes: not a bundle file")
    return content


def read_model(bundle_dir: Path, name: str, entry: ModelEntry) -> bytes:
    """The model file's bytes, checked against the entry (the bytes returned are those hashed,
    so a file swapped after the check can never be the one that runs)."""
    return _check_file(Path(bundle_dir), name, entry, keep=True)


def verify_files(bundle_dir: Path, manifest: Manifest) -> None:
    """Check every listed file: inside the bundle, regular, the entry's size and sha256."""
    for name, entry in manifest.models.items():
        _check_file(Path(bundle_dir), name, entry, keep=False)


def _check_file(bundle_dir: Path, name: str, entry: ModelEntry, keep: bool) -> bytes:
    """Check one file against its entry; its bytes when `keep`, else b"". At most
    `entry.bytes + 1` bytes are read, so a longer file is refused without reading it all."""
    root = bundle_dir.resolve()
    path = root / entry.file
    try:
        inside = path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise ManifestError(
            f"model file {path} for {name!r} resolves outside the bundle {root} (a symlink?): "
            "redeploy the model bundle"
        )
    what = f"model file {path} for {name!r}"
    content = b""
    with _open_regular(path, what, advice="; redeploy the model bundle") as handle:
        if keep:  # one buffer, read once (chunks joined were a second copy: 2x the RSS, slower)
            content = handle.read(entry.bytes + 1)
            digest, size = hashlib.sha256(content), len(content)
        else:  # only hashed: 1 MiB at a time through one reused buffer
            digest, size = _digest(handle, entry.bytes + 1)
    if size != entry.bytes:
        raise ManifestError(
            f"{what} does not match the manifest ("
            + ("more than" if size > entry.bytes else f"{size} bytes,")
            + f" {entry.bytes} bytes expected): it was altered or belongs to another bundle; "
            "redeploy the model bundle"
        )
    if digest.hexdigest() != entry.sha256:
        raise ManifestError(
            f"{what} does not match the manifest "
            f"(sha256 {digest.hexdigest()[:12]}..., expected {entry.sha256[:12]}...): it was "
            "altered or belongs to another bundle; redeploy the model bundle"
        )
    return content


def _digest(handle: BinaryIO, limit: int) -> tuple[Any, int]:
    """(sha256 object, bytes read) of at most `limit` bytes of `handle`."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(_CHUNK))
    size = 0
    while size < limit and (count := handle.readinto(buffer[: min(_CHUNK, limit - size)])):
        digest.update(buffer[:count])
        size += count
    return digest, size


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a regular file, read in 1 MiB chunks (never a device or FIFO)."""
    digest = hashlib.sha256()
    with _open_regular(path, f"model file {path}") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_revision(directory: Path) -> str:
    """Short commit of the checkout holding `directory`, or "unknown" outside git."""
    import subprocess  # only training writes manifests: kept off the kiosk's start-up path

    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip()


def write_entry(models_dir: Path, name: str, file_path: Path, **fields: Any) -> ModelEntry:
    """Add or replace the entry `name` for `file_path` (inside `models_dir`; hash, size, export
    time and git revision computed here). The new manifest is validated before it atomically
    replaces the old one, so training can never write a manifest the kiosk would refuse; a
    `manifest.sig` of the old manifest is removed (it no longer matches: sign again)."""
    models_dir = Path(models_dir)
    reserved = {"file", "sha256", "bytes", "exported", "git_revision"} & fields.keys()
    if reserved:
        raise ValueError(f"write_entry computes {', '.join(sorted(reserved))} itself")
    try:
        relative = Path(file_path).resolve().relative_to(models_dir.resolve())
    except ValueError:
        raise ManifestError(f"model file {file_path} must lie inside {models_dir}") from None
    entry = {
        "file": relative.as_posix(),
        "sha256": sha256_file(Path(file_path)),
        "bytes": Path(file_path).stat().st_size,
        **fields,
        "exported": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_revision": git_revision(models_dir),
    }
    return _rewrite(models_dir, lambda models: models.update({name: entry})).models[name]


def remove_entry(models_dir: Path, name: str) -> None:
    """Drop the entry `name` (its file stays), as `write_entry` writes: validated, atomic, the
    stale signature removed. For a model that no longer ships beside the ones retrained."""
    _rewrite(Path(models_dir), lambda models: models.pop(name, None))


def _rewrite(models_dir: Path, change: Callable[[dict[str, Any]], Any]) -> Manifest:
    """Apply `change` to the manifest's `models` object, validate, replace atomically."""
    path = models_dir / MANIFEST
    data: Any = {"models": {}}
    if path.exists():  # only parsed: the new manifest is validated, so a bad entry can be fixed
        data = _decode(path, _read_regular(path, MAX_MANIFEST_BYTES, f"model manifest {path}"))
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ManifestError(f"model manifest {path}: `models` must be an object; fix or delete it")
    change(data["models"])
    data["models"] = dict(sorted(data["models"].items()))
    content = (json.dumps(data, indent=2) + "\n").encode()
    manifest = _parse(path, content)
    write_atomically(path, content)
    path.chmod(0o644)  # models are not personal data; the kiosk user reads them
    stale = models_dir / SIGNATURE
    if stale.exists():
        stale.unlink()
        log.info("removed %s: it signed the previous manifest", stale)
    return manifest


def generate_key(prefix: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: `PREFIX.key` (PKCS#8 PEM, mode 0600) and `PREFIX.pub`."""
    private_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    for existing in (private_path, public_path):
        if existing.exists():
            raise ManifestError(
                f"{existing} already exists: refusing to replace a signing key (kiosks trust "
                "the old one); choose another --out"
            )
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomically(private_path, private_pem)  # created 0600
    write_atomically(public_path, public_pem)
    public_path.chmod(0o644)
    return private_path, public_path


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw 32-byte public key: how messages name a key."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_bundle(bundle_dir: Path, private_key_path: Path) -> Path:
    """Validate the bundle (manifest and every file), then write `manifest.sig`: an Ed25519
    signature over the exact manifest bytes. Never signs a bundle the kiosk would refuse."""
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    verify_files(bundle_dir, manifest)
    key = _load_private_key(private_key_path)
    record = {
        "algorithm": "ed25519",
        "manifest_sha256": manifest.sha256,
        "public_key_sha256": key_fingerprint(key.public_key()),
        "signature": base64.b64encode(key.sign(manifest.raw_bytes)).decode(),
    }
    path = bundle_dir / SIGNATURE
    write_atomically(path, (json.dumps(record, indent=1) + "\n").encode())
    path.chmod(0o644)
    return path


def verify_signature(
    bundle_dir: Path, public_key_path: Path, manifest: Manifest | None = None
) -> str:
    """Check `manifest.sig` against the manifest bytes (those of `manifest` when given, so the
    bytes verified are the bytes used); returns the key's fingerprint, raises ManifestError."""
    from cryptography.exceptions import InvalidSignature

    bundle_dir = Path(bundle_dir)
    key = _load_public_key(public_key_path)
    manifest = manifest or load_manifest(bundle_dir)
    path = bundle_dir / SIGNATURE
    raw = _read_regular(
        path,
        MAX_SIGNATURE_BYTES,
        f"signature {path}",
        missing=f"bundle {bundle_dir} is not signed (no {SIGNATURE}): sign it with "
        "`kiosk bundle sign DIR --key KEY.key` (make deploy does)",
    )
    try:
        record = json.loads(raw)
        signature = base64.b64decode(record.get("signature", ""), validate=True)
        signer = str(record.get("public_key_sha256", ""))
        if record.get("algorithm") != "ed25519" or len(signature) != 64:
            raise ValueError("no Ed25519 signature in it")
    except (ValueError, AttributeError, TypeError, binascii.Error, RecursionError) as exc:
        raise ManifestError(f"signature {path} is damaged ({exc}): sign the bundle again") from None
    expected = key_fingerprint(key)
    try:
        key.verify(signature, manifest.raw_bytes)
    except InvalidSignature:
        if signer != expected:
            raise ManifestError(
                f"bundle {bundle_dir} is signed with another key ({signer[:16]}) than "
                f"{public_key_path} ({expected[:16]}): sign it with the office's key"
            ) from None
        raise ManifestError(
            f"signature {path} does not match {manifest.path}: the manifest was changed "
            "after signing; rebuild and sign the bundle again"
        ) from None
    return expected


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_regular(
        Path(path),
        _MAX_KEY_BYTES,
        f"private key {path}",
        missing=f"private key {path} is missing: create one with `kiosk bundle keygen --out PREFIX`",
    )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ManifestError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ManifestError(f"{path} is not an Ed25519 private key")
    return key


def _load_public_key(path: Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read_regular(
        Path(path),
        _MAX_KEY_BYTES,
        f"public key {path}",
        missing=f"public key {path} is missing: install the office's bundle key "
        "(install-rpi.sh --public-key FILE) or set [models] public_key to the right file",
    )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ManifestError(f"{path} is not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ManifestError(f"{path} is not an Ed25519 public key")
    return key


@functools.cache
def warn_unchecked(bundle_dir: str) -> None:
    """Log once per bundle that its signature was not checked (no public key configured)."""
    log.warning(
        "model bundle %s is loaded without a signature check: set [models] public_key to the "
        "office's bundle key on a kiosk",
        bundle_dir,
    )
