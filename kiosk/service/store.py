"""Capture store: encrypted capture files, each carrying its own record, indexed by SQLite (WAL).

Layout under ``root``: ``images/<id>.cap`` (one encrypted capture each), ``captures.db`` (SQLite,
WAL, ``synchronous=FULL``: an index of the records, rebuildable from the files),
``quarantine/`` (files that failed authentication, never deleted) and ``store.lock`` (held by
the one writer).

A capture file (format ``IDKC3``) holds the capture's record (the database row as JSON), the
full-resolution JPEG and, when the capture step made one, the token photo and its ISO Token
Frontal image (docs/token.md), each sealed with AES-256-GCM under the store key, with the capture
id (and the image's role) in the associated data: a file renamed to another id, an image moved
to another role, or anything altered, fails authentication. Older files are still read:
``IDKC2`` (record and JPEG) and ``IDKC1`` (the JPEG only).

Commit protocol of :meth:`CaptureStore.save`:

1. seal the record and the JPEG;
2. write them to ``images/.<id>.cap.<random>.tmp``, fsync, rename to ``images/<id>.cap``, fsync
   the directory (``kiosk.contract.fileio.write_atomically``): from here the capture survives anything
   short of losing the file, since the file alone can rebuild its row;
3. insert the row in one transaction and commit (durable with WAL + ``synchronous=FULL``).

Recovery, run when a writer opens the store, only ever deletes temp files (a save that never
reached its rename, so never reported as stored). A ``.cap`` file without a row (a crash between
2 and 3, a deleted database, a lost ``-wal``) is re-indexed from its authenticated header; one
that does not authenticate is moved to ``quarantine/``. Nothing in ``images/`` is ever deleted.
A damaged database is refused with a message naming ``kiosk store repair``
(:func:`repair_store`), which keeps the damaged file beside the one it rebuilds from the
capture files. Readers (``kiosk export``, ``kiosk store check``) open the database read-only
and see committed rows only, so they can run beside the service.

A save that fails (free space under ``min_free_mb``, ENOSPC, any I/O error) removes what it wrote
and raises :class:`StoreError`; nothing half-written stays behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kiosk.contract.errors import KioskError
from kiosk.contract.fileio import fsync_dir, write_atomically

if TYPE_CHECKING:
    from kiosk.config import StoreConfig

log = logging.getLogger(__name__)

DB_NAME = "captures.db"
IMAGES = "images"
QUARANTINE = "quarantine"
SUFFIX = ".cap"
KEY_BYTES = 32
UNKNOWN_DECISION = "unknown"  # the decision of an IDKC1 file re-indexed after its row was lost
# IDKC3: magic, sealed-header length (4 bytes, big-endian), header nonce, AES-GCM(record JSON),
# then per image in IMAGE_ROLES order that the record lists: nonce, AES-GCM(JPEG); each image's
# length is in the record. IDKC2 (read only): the same with the still only and other associated
# data. IDKC1 (read only): magic, nonce, AES-GCM(JPEG).
_MAGIC = b"IDKC3"
_MAGIC_V2 = b"IDKC2"
_MAGIC_V1 = b"IDKC1"
STILL, TOKEN, TOKEN_FRONTAL = "still", "token", "token_frontal"
IMAGE_ROLES = (STILL, TOKEN, TOKEN_FRONTAL)
# Where each image's length is kept: image_bytes for the still, keys of the token record else.
_TOKEN_LENGTH_KEYS = {TOKEN: "bytes", TOKEN_FRONTAL: "frontal_bytes"}
_NONCE = 12
_TAG = 16
_MAX_HEADER = 1 << 20  # a record is a few KiB; a larger length field means a damaged file
_HEADER_AD = b"IDKC3 record\0"
_HEADER_AD_V2 = b"IDKC2 record\0"
_IMAGE_AD_V2 = b"IDKC2 image\0"
_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}$")
_COLUMNS = (
    "id",
    "session_id",
    "created",
    "decision",
    "verdict",
    "forensics",
    "models",
    "image_bytes",
    "stored",
    "token",
    "office",
)
_TEXT_COLUMNS = ("id", "session_id", "created", "decision", "stored")
_JSON_COLUMNS = ("verdict", "forensics", "models", "token", "office")
# Columns added after the first schema, with the value rows written before them take.
_ADDED_COLUMNS = {"token": "'{}'", "office": "'{}'"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created TEXT NOT NULL,
    decision TEXT NOT NULL,
    verdict TEXT NOT NULL,
    forensics TEXT NOT NULL,
    models TEXT NOT NULL,
    image_bytes INTEGER NOT NULL,
    stored TEXT NOT NULL,
    token TEXT NOT NULL DEFAULT '{}',
    office TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS captures_created ON captures (created);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_REPAIR_HINT = (
    "the capture files are not affected: stop the kiosk service and run `kiosk store repair` "
    "(it keeps the damaged database beside the one it rebuilds from the capture files)"
)


class StoreError(KioskError):
    """A capture that cannot be stored or read (disk full, I/O error, wrong key, missing file)."""


@dataclass(frozen=True)
class CaptureRecord:
    """What is stored with each capture image; plain JSON-able data.

    ``created`` is an ISO 8601 time (UTC if it has no offset), stored normalized to UTC;
    ``decision`` is the operator's ("accept", "retake", ...); ``verdict`` is
    ``Verdict.as_record(...)`` (every check's value and limit); ``models`` maps model name to
    the sha256 that produced it; ``token`` is ``TokenPhoto.as_record()`` (format, geometry,
    warnings) when a token photo is stored with the capture, else empty; ``office`` is what the
    office files the capture under: ``case_ref`` (the applicant's case reference the operator
    entered), ``operator``, ``kiosk_id`` and ``retakes`` (one reason per retaken still).
    """

    session_id: str
    created: str
    decision: str
    verdict: dict[str, Any] = field(default_factory=dict)
    forensics: dict[str, Any] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    token: dict[str, Any] = field(default_factory=dict)
    office: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recovery:
    """What opening the store as writer found and did (all zero after a clean shutdown)."""

    temp_files_removed: int = 0
    files_reindexed: int = 0
    files_quarantined: int = 0
    rows_missing_file: int = 0
    damaged_rows: int = 0
    quarantine_total: int = 0

    def problems(self) -> list[str]:
        """What the operator has to look at (for /health); re-indexing alone needs nothing."""
        problems = []
        if self.quarantine_total:
            problems.append(
                f"{self.quarantine_total} capture file(s) in {QUARANTINE}/ failed authentication "
                "(altered, or written with another key): see `kiosk store check`"
            )
        if self.rows_missing_file:
            problems.append(
                f"{self.rows_missing_file} capture record(s) have no image file "
                "(deleted outside the kiosk?)"
            )
        if self.damaged_rows:
            problems.append(
                f"{self.damaged_rows} capture record(s) are damaged: stop the service and run "
                "`kiosk store repair`"
            )
        return problems

    def as_record(self) -> dict[str, int]:
        return asdict(self)


def utc_iso(text: str) -> str:
    """Normalize an ISO 8601 time to ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sorts as text)."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise StoreError(f"time {text!r} is not ISO 8601 (e.g. 2026-11-21T15:04:05Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_or_create_key(path: Path, create: bool) -> bytes:
    """Read the 32-byte store key; create it (mode 0600, atomically, never overwriting) if allowed.

    Callers allow creation only for a store without captures: a missing key beside existing
    captures must be restored, and a new key would make a later restore (``cp -n``) a no-op.
    """
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise StoreError(
                f"capture key file {path} is missing; without it the stored captures cannot "
                "be decrypted: restore it from the office's copy ([store] key_file). The kiosk "
                "never creates a new key for a store that holds captures"
            ) from None
        return _create_key(path)
    except OSError as exc:
        raise StoreError(f"cannot read capture key file {path}: {exc.strerror}") from None
    if len(key) != KEY_BYTES:
        raise StoreError(f"capture key file {path} holds {len(key)} bytes, expected {KEY_BYTES}")
    if path.stat().st_mode & 0o077:
        log.warning("capture key file %s is readable by other users; chmod 600 it", path)
    return key


def _create_key(path: Path) -> bytes:
    # Written whole to a temp file, then hard-linked into place: a crash never leaves a short
    # key file, and link() fails instead of overwriting a key another process just created.
    key = AESGCM.generate_key(bit_length=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
        os.close(fd)
        os.link(temp, path)
        fsync_dir(path.parent)
    except FileExistsError:
        return load_or_create_key(path, create=False)
    finally:
        temp.unlink(missing_ok=True)
    log.info("created capture key file %s", path)
    return key


def key_fingerprint(key: bytes) -> str:
    """A short id of the key, kept in the database to catch a swapped key before any save."""
    return hashlib.sha256(b"idkiosk capture key id\0" + key).hexdigest()[:16]


def _new_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


# --- capture files --------------------------------------------------------------------------------


def _image_ad(role: str, capture_id: bytes) -> bytes:
    return b"IDKC3 image " + role.encode() + b"\0" + capture_id


def _image_lengths(row: dict[str, Any]) -> dict[str, int]:
    """The images a record says its file holds, in file order, with their lengths."""
    lengths = {STILL: row["image_bytes"]}
    for role, key in _TOKEN_LENGTH_KEYS.items():
        if row["token"].get(key):
            lengths[role] = row["token"][key]
    return lengths


def _seal(aead: AESGCM, row: dict[str, Any], images: dict[str, bytes]) -> bytes:
    capture_id = row["id"].encode()
    header_nonce = os.urandom(_NONCE)
    header = aead.encrypt(header_nonce, json.dumps(row).encode(), _HEADER_AD + capture_id)
    if len(header) > _MAX_HEADER:
        raise StoreError(f"capture record is {len(header)} bytes, more than {_MAX_HEADER}")
    parts = [_MAGIC, len(header).to_bytes(4, "big"), header_nonce, header]
    for role in _image_lengths(row):
        nonce = os.urandom(_NONCE)
        parts += [nonce, aead.encrypt(nonce, images[role], _image_ad(role, capture_id))]
    return b"".join(parts)


def _open_sealed(aead: AESGCM, sealed: bytes, associated: bytes, what: str) -> bytes:
    if len(sealed) < _NONCE + _TAG:
        raise StoreError(f"{what} is truncated")
    try:
        return aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], associated)
    except InvalidTag:
        raise StoreError(
            f"{what} failed authentication: altered, renamed, or written with another key"
        ) from None


def read_capture_file(
    aead: AESGCM, path: Path, with_image: bool = True
) -> tuple[dict[str, Any] | None, bytes | None]:
    """(record, JPEG) of one capture file, authenticated; StoreError says what is wrong.

    The record is None for an IDKC1 file (it has none). ``with_image=False`` reads only the
    record of an IDKC2/3 file (what start-up recovery needs) and returns None for the JPEG; an
    IDKC1 file is always read whole, since only its JPEG can prove it authentic.
    """
    row, images = read_capture_images(aead, path, with_images=with_image)
    return row, images.get(STILL)


def read_capture_images(
    aead: AESGCM, path: Path, with_images: bool = True
) -> tuple[dict[str, Any] | None, dict[str, bytes]]:
    """(record, images by role: still, token, token_frontal) of one capture file, every part
    authenticated; ``with_images=False`` as in :func:`read_capture_file`."""
    capture_id = path.name.removesuffix(SUFFIX)
    if not _ID.match(capture_id) or not path.name.endswith(SUFFIX):
        raise StoreError(f"{path.name} is not named like a capture file (<id>{SUFFIX})")
    what = f"capture file {path.name}"
    ident = capture_id.encode()
    try:
        with path.open("rb") as file:
            magic = file.read(len(_MAGIC))
            if magic == _MAGIC_V1:
                return None, {STILL: _open_sealed(aead, file.read(), ident, what)}
            if magic not in (_MAGIC, _MAGIC_V2):
                raise StoreError(f"{what} is not a capture file")
            size = int.from_bytes(file.read(4), "big")
            if not _TAG <= size <= _MAX_HEADER:
                raise StoreError(f"{what} has a damaged header")
            sealed = file.read(_NONCE + size)
            header_ad = _HEADER_AD if magic == _MAGIC else _HEADER_AD_V2
            header = _open_sealed(aead, sealed, header_ad + ident, what)
            try:
                row = json.loads(header)
                if magic == _MAGIC_V2 and isinstance(row, dict):
                    row.setdefault("token", {})  # written before token photos were stored
                if isinstance(row, dict):
                    row.setdefault("office", {})  # written before office fields were stored
                row = _validated(row)
            except (ValueError, TypeError, KeyError) as exc:
                raise StoreError(f"{what} holds an invalid record ({exc})") from None
            if row["id"] != capture_id:
                raise StoreError(f"{what} holds the record of another capture")
            if not with_images:
                return row, {}
            if magic == _MAGIC_V2:
                images = {STILL: _open_sealed(aead, file.read(), _IMAGE_AD_V2 + ident, what)}
            else:
                images = {}
                for role, length in _image_lengths(row).items():
                    part = file.read(_NONCE + length + _TAG)
                    images[role] = _open_sealed(aead, part, _image_ad(role, ident), what)
                if file.read(1):
                    raise StoreError(f"{what} has data after its last image")
    except OSError as exc:
        raise StoreError(f"{what} is unreadable: {exc.strerror}") from None
    for role, length in _image_lengths(row).items():
        if len(images.get(role, b"")) != length:
            raise StoreError(
                f"{what} holds {len(images.get(role, b''))} bytes of its {role} image, its "
                f"record says {length}"
            )
    return row, images


def _legacy_row(capture_id: str, image_bytes: int) -> dict[str, Any]:
    """The record of an IDKC1 file whose row is lost: what the id and the file still tell."""
    created = datetime.strptime(capture_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return {
        "id": capture_id,
        "session_id": "",
        "created": utc_iso(created.isoformat()),
        "decision": UNKNOWN_DECISION,
        "verdict": {},
        "forensics": {},
        "models": {},
        "image_bytes": image_bytes,
        "stored": utc_iso(datetime.now(UTC).isoformat()),
        "token": {},
        "office": {},
    }


def _validated(row: Any) -> dict[str, Any]:
    """The row if it has exactly the record's fields with their types; else ValueError."""
    if not isinstance(row, dict) or set(row) != set(_COLUMNS):
        raise ValueError("not a capture record")
    bad = [name for name in _TEXT_COLUMNS if not isinstance(row[name], str)]
    bad += [name for name in _JSON_COLUMNS if not isinstance(row[name], dict)]
    if type(row["image_bytes"]) is not int or row["image_bytes"] < 1:
        bad.append("image_bytes")
    if isinstance(row["token"], dict):
        lengths = [row["token"][key] for key in _TOKEN_LENGTH_KEYS.values() if key in row["token"]]
        if any(type(length) is not int or length < 1 for length in lengths):
            bad.append("token")
    if bad:
        raise ValueError(f"bad {', '.join(bad)}")
    if not _ID.match(row["id"]):
        raise ValueError("bad id")
    return row


def _capture_files(images: Path) -> list[Path]:
    return sorted(p for p in images.iterdir() if p.suffix == SUFFIX and not p.name.startswith("."))


def _temp_files(images: Path) -> list[Path]:
    """Temp files of saves that never reached their rename (``write_atomically``'s pattern)."""
    return [p for p in images.iterdir() if p.name.startswith(".") and p.suffix == ".tmp"]


def _count_files(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def _quarantine(root: Path, path: Path) -> Path:
    """Move ``path`` into ``root/quarantine/`` under a free name (link + unlink: never overwrite)."""
    folder = root / QUARANTINE
    folder.mkdir(mode=0o700, exist_ok=True)
    for n in count():
        target = folder / (path.name if n == 0 else f"{path.name}.{n}")
        try:
            os.link(path, target)
        except FileExistsError:
            continue
        break
    path.unlink()
    fsync_dir(folder)
    fsync_dir(path.parent)
    return target


# --- database rows --------------------------------------------------------------------------------


def _insert(db: sqlite3.Connection, row: dict[str, Any], replace: bool = False) -> None:
    values = [json.dumps(row[c]) if c in _JSON_COLUMNS else row[c] for c in _COLUMNS]
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    db.execute(
        f"{verb} INTO captures ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
        values,
    )


def _iter_rows(
    db: sqlite3.Connection, tail: str = "", params: tuple[Any, ...] = ()
) -> Iterator[tuple[str | None, dict[str, Any] | None, str]]:
    """(id or None, row or None, error) per row; a row that does not decode is named, not fatal.

    The connection returns TEXT as bytes (``text_factory=bytes``), so damaged text becomes a
    per-row error here instead of a ``sqlite3`` exception that ends the whole query.
    """
    cursor = db.execute(f"SELECT rowid, {_select_list(db)} FROM captures{tail}", params)
    for rowid, *values in cursor:
        raw_id = values[0]
        try:
            capture_id = raw_id.decode() if isinstance(raw_id, bytes) else None
        except UnicodeDecodeError:
            capture_id = None
        if capture_id is not None and not _ID.match(capture_id):
            capture_id = None
        try:
            row = dict(zip(_COLUMNS, values, strict=True))
            for name in (*_TEXT_COLUMNS, *_JSON_COLUMNS):
                if isinstance(row[name], bytes):
                    row[name] = row[name].decode("utf-8")
            for name in _JSON_COLUMNS:
                row[name] = json.loads(row[name])
            yield capture_id, _validated(row), ""
        except (UnicodeDecodeError, ValueError, TypeError) as exc:
            label = capture_id or f"in database row {rowid}"
            yield capture_id, None, f"record {label} is damaged ({type(exc).__name__})"


def _existing_columns(db: sqlite3.Connection) -> set[str]:
    return {row[1].decode() for row in db.execute("PRAGMA table_info(captures)")}


def _select_list(db: sqlite3.Connection) -> str:
    """The columns to read; a column a reader's (not yet migrated) database lacks reads as the
    value older rows take, so ``kiosk export`` runs beside an older service."""
    existing = _existing_columns(db)
    return ", ".join(
        name if name in existing or name not in _ADDED_COLUMNS else _ADDED_COLUMNS[name]
        for name in _COLUMNS
    )


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns a database created by an older kiosk lacks (writer only)."""
    existing = _existing_columns(db)
    for name, default in _ADDED_COLUMNS.items():
        if name not in existing:
            db.execute(f"ALTER TABLE captures ADD COLUMN {name} TEXT NOT NULL DEFAULT {default}")
            log.info("capture database: added the %s column", name)


def _database_error(db_path: Path, exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "")
    # IntegrityError here: an index that disagrees with its table (quick_check does not look).
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or isinstance(
        exc, sqlite3.IntegrityError
    ):
        return StoreError(f"capture database {db_path} is damaged ({exc}); {_REPAIR_HINT}")
    if "no such table" in str(exc):
        return StoreError(
            f"capture database {db_path} holds no capture records (its write-ahead log lost?): "
            "start the kiosk service, or run `kiosk store repair`, to rebuild them from the "
            "capture files"
        )
    return StoreError(f"capture database {db_path} cannot be opened: {exc}")


def _connect(db_path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    else:
        db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    db.text_factory = bytes
    return db


def _quick_check(db: sqlite3.Connection) -> str:
    """ "" when SQLite finds the database sound, else its first finding on one line."""
    result = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
    if result == [b"ok"]:
        return ""
    return " ".join(result[0].decode(errors="replace").split())[:200] if result else "no answer"


def _restrict(db_path: Path) -> None:
    """``captures.db*`` hold personal data: 0600 whatever the umask was when they were made."""
    for path in (db_path, *(db_path.with_name(db_path.name + s) for s in ("-wal", "-shm"))):
        try:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
        except FileNotFoundError:
            continue


def _take_lock(root: Path) -> int:
    fd = os.open(root / "store.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"capture store {root} is in use by another process (store.lock); only one "
            "process may write to it: stop the kiosk service first"
        ) from None
    return fd


class CaptureStore:
    """Encrypted capture files with their records; see the module docstring for the protocol.

    One writer per store (an exclusive lock on ``store.lock``); ``readonly=True`` opens for
    reading beside a running writer (no lock, no recovery, no key creation). Methods are
    thread-safe (one connection behind a lock), so a service thread can save while the console
    lists. Every failure to open is a :class:`StoreError` that says what to do.
    """

    def __init__(
        self, root: Path, key_path: Path, min_free_mb: float = 0.0, readonly: bool = False
    ) -> None:
        self.root = Path(root)
        self.images = self.root / IMAGES
        self.min_free_bytes = int(min_free_mb * 1024 * 1024)
        self.readonly = readonly
        self._mutex = threading.Lock()
        self._lock_fd: int | None = None
        db_path = self.root / DB_NAME
        try:
            if readonly:
                if not db_path.exists():
                    raise StoreError(
                        f"no capture store at {self.root} ({DB_NAME} missing); if "
                        f"{IMAGES}/ holds capture files, start the kiosk service or run "
                        "`kiosk store repair` to rebuild their records"
                    )
                self._db = _connect(db_path, readonly=True)
            else:
                self.images.mkdir(parents=True, exist_ok=True)
                self._lock_fd = _take_lock(self.root)
                if not db_path.exists():
                    os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                self._db = _connect(db_path, readonly=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            if damage := _quick_check(self._db):
                raise StoreError(
                    f"capture database {db_path} is damaged ({damage}); {_REPAIR_HINT}"
                )
            if not readonly:
                self._db.executescript(_SCHEMA)
                _migrate(self._db)
                _restrict(db_path)
            ids, damaged = set(), 0
            for capture_id, row, _error in _iter_rows(self._db):
                damaged += row is None
                if capture_id is not None:
                    ids.add(capture_id)
            key_row = self._db.execute("SELECT value FROM meta WHERE name = 'key_id'").fetchone()
            key_id = key_row[0].decode(errors="replace") if key_row else None
            files = _capture_files(self.images) if self.images.is_dir() else []
            has_captures = bool(ids or damaged or files or key_id)
            has_captures |= _count_files(self.root / QUARANTINE) > 0
            key = load_or_create_key(Path(key_path), create=not readonly and not has_captures)
            self._aead = AESGCM(key)
            self._check_key(key, key_id, bool(ids or damaged), files)
            if readonly:
                self.recovery = Recovery(damaged_rows=damaged)
            else:
                self.recovery = self._recover(ids, damaged, files)
        except sqlite3.Error as exc:
            self.close()
            raise _database_error(db_path, exc) from None
        except OSError as exc:
            self.close()
            raise StoreError(f"capture store {self.root} cannot be opened: {exc}") from None
        except StoreError:
            self.close()
            raise

    @classmethod
    def from_config(cls, config: StoreConfig, readonly: bool = False) -> CaptureStore:
        """The store a ``[store]`` config section describes."""
        return cls(config.path, config.key_path, config.min_free_mb, readonly=readonly)

    # --- writing -----------------------------------------------------------------------------

    def save(
        self,
        record: CaptureRecord,
        image_jpeg: bytes,
        token_jpeg: bytes | None = None,
        frontal_jpeg: bytes | None = None,
    ) -> str:
        """Encrypt and store one capture (the full-resolution JPEG and, when given, the token
        photo and its Token Frontal image, described by ``record.token``); returns its id.
        StoreError leaves nothing behind."""
        if self.readonly:
            raise StoreError("the capture store was opened read-only")
        if not image_jpeg:
            raise StoreError("refusing to store an empty capture image")
        if frontal_jpeg and not token_jpeg:
            raise StoreError("a Token Frontal image is stored only with its token photo")
        images = {STILL: image_jpeg}
        token = {k: v for k, v in record.token.items() if k not in _TOKEN_LENGTH_KEYS.values()}
        for role, image in ((TOKEN, token_jpeg), (TOKEN_FRONTAL, frontal_jpeg)):
            if image:
                images[role] = image
                token[_TOKEN_LENGTH_KEYS[role]] = len(image)
        row = {
            "id": "",
            "session_id": record.session_id,
            "created": utc_iso(record.created),
            "decision": record.decision,
            "verdict": record.verdict,
            "forensics": record.forensics,
            "models": record.models,
            "image_bytes": len(image_jpeg),
            "stored": "",
            "token": token,
            "office": record.office,
        }
        with self._mutex:
            self._check_free_space(sum(len(image) for image in images.values()))
            row["id"] = capture_id = _new_id()
            row["stored"] = utc_iso(datetime.now(UTC).isoformat())
            try:
                content = _seal(self._aead, _validated(row), images)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"capture record is not storable: {exc}") from None
            final = self.images / f"{capture_id}{SUFFIX}"
            self._write_file(final, content)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                _insert(self._db, row)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                final.unlink(missing_ok=True)
                raise StoreError(
                    f"capture not stored: the database refused it ({exc}); "
                    f"check free space and permissions under {self.root}"
                ) from None
        return capture_id

    def _check_free_space(self, size: int) -> None:
        stats = os.statvfs(self.root)
        free = stats.f_bavail * stats.f_frsize
        if free - size < self.min_free_bytes:
            raise StoreError(
                f"capture not stored: {free // 2**20} MiB free under {self.root}, the store "
                f"keeps at least {self.min_free_bytes // 2**20} MiB ([store] min_free_mb); "
                "export and remove old captures"
            )

    def _write_file(self, final: Path, content: bytes) -> None:
        try:
            write_atomically(final, content)
        except OSError as exc:
            final.unlink(missing_ok=True)  # renamed, but the directory fsync failed
            raise StoreError(
                f"capture not stored: writing {final.name} failed ({exc.strerror or exc}); "
                f"check free space and permissions under {self.root}"
            ) from None

    # --- reading -----------------------------------------------------------------------------

    def list(self, limit: int | None = 100, since: str | None = None) -> list[dict[str, Any]]:
        """Records newest first (at most ``limit``; None: all), optionally created >= ``since``.

        A damaged record is left out and logged; :meth:`list_with_errors` names it.
        """
        records, errors = self.list_with_errors(limit, since)
        for error in errors:
            log.error("capture store %s: %s; run `kiosk store repair`", self.root, error)
        return records

    def list_with_errors(
        self, limit: int | None = 100, since: str | None = None
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """(records as :meth:`list` returns them, one message per damaged record left out)."""
        tail, params = "", []
        if since is not None:
            tail += " WHERE created >= ?"
            params.append(utc_iso(since))
        tail += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            tail += " LIMIT ?"
            params.append(int(limit))
        records, errors = [], []
        with self._mutex:
            try:
                for _capture_id, row, error in _iter_rows(self._db, tail, tuple(params)):
                    if row is None:
                        errors.append(error)
                    else:
                        records.append(row)
            except sqlite3.Error as exc:
                raise _database_error(self.root / DB_NAME, exc) from None
        return records, errors

    def load_image(self, capture_id: str) -> bytes:
        """The decrypted JPEG bytes of a capture; StoreError if unknown, missing or altered."""
        return self.load_images(capture_id)[STILL]

    def load_images(self, capture_id: str) -> dict[str, bytes]:
        """The decrypted JPEGs of a capture by role (``still`` always; ``token`` and
        ``token_frontal`` when stored); StoreError if unknown, missing or altered."""
        if not _ID.match(capture_id):
            raise StoreError(f"{capture_id!r} is not a capture id")
        with self._mutex:
            try:
                known = self._db.execute("SELECT 1 FROM captures WHERE id = ?", (capture_id,))
                found = known.fetchone() is not None
            except sqlite3.Error as exc:
                raise _database_error(self.root / DB_NAME, exc) from None
        if not found:
            raise StoreError(f"no capture {capture_id} in this store")
        path = self.images / f"{capture_id}{SUFFIX}"
        try:
            _row, images = read_capture_images(self._aead, path)
        except StoreError as exc:
            raise StoreError(f"image of capture {capture_id}: {exc}") from None
        return images  # never without the still: reading returns it or raises

    def close(self) -> None:
        """Close the database and release the writer lock (idempotent)."""
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> CaptureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- opening -----------------------------------------------------------------------------

    def _check_key(self, key: bytes, key_id: str | None, has_rows: bool, files: list[Path]) -> None:
        """The key must be this store's: by the fingerprint, or (database lost) by the files."""
        fingerprint = key_fingerprint(key)
        if key_id is not None:
            if key_id != fingerprint:
                raise StoreError(
                    f"the capture key file is not the one this store at {self.root} was "
                    "created with; restore the right key ([store] key_file)"
                )
            return
        if files and not any(self._opens(path) for path in files):
            raise StoreError(
                f"the capture key file opens none of the {len(files)} capture file(s) in "
                f"{self.images}: it is not this store's key; restore the right key "
                "([store] key_file)"
            )
        if has_rows and not files:
            raise StoreError(f"capture store {self.root} has captures but no key fingerprint")
        if not self.readonly:
            self._db.execute("INSERT INTO meta VALUES ('key_id', ?)", (fingerprint,))

    def _opens(self, path: Path) -> bool:
        try:
            read_capture_file(self._aead, path, with_image=False)
        except StoreError:
            return False
        return True

    def _recover(self, ids: set[str], damaged: int, files: list[Path]) -> Recovery:
        """Remove temp files; re-index files without a row, quarantine those that fail."""
        temps = _temp_files(self.images)
        for path in temps:
            path.unlink()
        reindexed: list[dict[str, Any]] = []
        quarantined = 0
        for path in files:
            if path.stem in ids:
                continue
            try:
                row, image = read_capture_file(self._aead, path, with_image=False)
            except StoreError as exc:
                target = _quarantine(self.root, path)
                log.error("capture store: %s; moved to %s", exc, target.relative_to(self.root))
                quarantined += 1
                continue
            reindexed.append(row or _legacy_row(path.stem, len(image or b"")))
        if reindexed:
            self._db.execute("BEGIN IMMEDIATE")
            for row in reindexed:
                _insert(self._db, row)
            self._db.execute("COMMIT")
        if temps:
            fsync_dir(self.images)
        on_disk = {p.stem for p in _capture_files(self.images)}
        recovery = Recovery(
            temp_files_removed=len(temps),
            files_reindexed=len(reindexed),
            files_quarantined=quarantined,
            rows_missing_file=len(ids - on_disk),
            damaged_rows=damaged,
            quarantine_total=_count_files(self.root / QUARANTINE),
        )
        if temps:
            log.info(
                "capture store recovery: removed %d temp file(s) of unfinished saves", len(temps)
            )
        if reindexed:
            log.warning(
                "capture store %s: %d capture file(s) had no record (database lost or a save "
                "interrupted); re-indexed from their authenticated headers",
                self.root,
                len(reindexed),
            )
        for problem in recovery.problems():
            log.error("capture store %s: %s", self.root, problem)
        return recovery


# --- kiosk store check / repair ------------------------------------------------------------------


@dataclass
class Consistency:
    """What `kiosk store check` found; lists name files and capture ids, never their content."""

    database: str = "ok"  # "ok", "missing", "no capture table" or "damaged (<reason>)"
    records: int = 0
    files: int = 0
    rows_missing_file: list[str] = field(default_factory=list)
    files_without_row: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)
    damaged_rows: list[str] = field(default_factory=list)
    temp_files: int = 0
    quarantined: int = 0

    def problems(self) -> list[str]:
        """One line per kind of problem, saying what repairs it; empty when consistent."""
        problems = []
        if self.database != "ok":
            problems.append(f"database {DB_NAME}: {self.database}")
        if self.files_without_row:
            problems.append(
                f"{len(self.files_without_row)} capture file(s) have no record: repair "
                "re-indexes them from their authenticated headers"
            )
        if self.damaged_rows:
            problems.append(
                f"{len(self.damaged_rows)} damaged record(s): repair rebuilds them from their "
                "capture files"
            )
        if self.unreadable_files:
            problems.append(
                f"{len(self.unreadable_files)} capture file(s) fail authentication or are not "
                f"capture files: repair moves them to {QUARANTINE}/"
            )
        if self.rows_missing_file:
            problems.append(
                f"{len(self.rows_missing_file)} record(s) have no capture file (deleted "
                "outside the kiosk?): nothing can rebuild the image; restore it from a backup"
            )
        if self.quarantined:
            problems.append(
                f"{self.quarantined} file(s) in {QUARANTINE}/: they failed authentication; "
                "keep them until someone has looked at them"
            )
        return problems

    def as_record(self) -> dict[str, Any]:
        problems = self.problems()
        return {**asdict(self), "consistent": not problems, "problems": problems}


@dataclass
class _Survey:
    report: Consistency
    db_rows: dict[str, dict[str, Any]]  # rows that decode, by id
    file_rows: dict[str, dict[str, Any]]  # the record of every file that authenticates
    key: bytes
    key_id: str | None
    unreadable: list[Path]
    damaged_ids: list[str | None]  # of the rows that do not decode (None: the id is damaged too)


def _read_database(
    db_path: Path, report: Consistency
) -> tuple[dict[str, dict[str, Any]], list[str | None], str | None]:
    """(rows that still decode by id, ids of those that do not, key fingerprint), however
    damaged the database is; what is wrong with it goes into ``report``."""
    rows: dict[str, dict[str, Any]] = {}
    damaged: list[str | None] = []
    key_id = None
    if not db_path.exists():
        report.database = "missing"
        return rows, damaged, key_id
    db = None
    try:
        db = _connect(db_path, readonly=True)
        if damage := _quick_check(db):
            report.database = f"damaged ({damage})"
        key_row = db.execute("SELECT value FROM meta WHERE name = 'key_id'").fetchone()
        key_id = key_row[0].decode(errors="replace") if key_row else None
        for capture_id, row, error in _iter_rows(db):
            if row is None:
                report.damaged_rows.append(error)
                damaged.append(capture_id)
            elif capture_id in rows:
                report.damaged_rows.append(f"record {capture_id} appears twice")
                damaged.append(capture_id)
            else:
                rows[capture_id] = row  # type: ignore[index]
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            report.database = "no capture table (its write-ahead log lost?)"
        else:
            report.database = f"damaged ({exc})"
    finally:
        if db is not None:
            db.close()
    return rows, damaged, key_id


def _survey(root: Path, key_path: Path) -> _Survey:
    images = root / IMAGES
    if not images.is_dir():
        raise StoreError(f"no capture store at {root} ({IMAGES}/ missing)")
    key = load_or_create_key(Path(key_path), create=False)
    aead = AESGCM(key)
    report = Consistency()
    # Files before rows: a save between the two then shows as a row whose file is listed late,
    # which the existence check below catches, never as a file without a row.
    files = _capture_files(images)
    db_rows, damaged_ids, key_id = _read_database(root / DB_NAME, report)
    if key_id is not None and key_id != key_fingerprint(key):
        raise StoreError(
            f"the capture key file {key_path} is not the one this store at {root} was created "
            "with; restore the right key ([store] key_file)"
        )
    file_rows: dict[str, dict[str, Any]] = {}
    unreadable = []
    for path in files:
        try:
            row, image = read_capture_file(aead, path)
        except StoreError as exc:
            report.unreadable_files.append(str(exc))
            unreadable.append(path)
            continue
        capture_id = path.stem
        if row is None:  # IDKC1: the database row, if it still decodes, is the only record
            row = db_rows.get(capture_id) or _legacy_row(capture_id, len(image or b""))
        if capture_id in db_rows and db_rows[capture_id] != row:
            report.damaged_rows.append(
                f"record {capture_id} differs from its file's authenticated record"
            )
        elif capture_id not in db_rows:
            report.files_without_row.append(path.name)
        file_rows[capture_id] = row
    if key_id is None and files and not file_rows:
        raise StoreError(
            f"the capture key file {key_path} opens none of the {len(files)} capture file(s) in "
            f"{images}: it is not this store's key; restore the right key ([store] key_file)"
        )
    on_disk = {p.stem for p in files}
    report.rows_missing_file = sorted(
        i for i in db_rows if i not in on_disk and not (images / f"{i}{SUFFIX}").exists()
    )
    report.records, report.files = len(db_rows) + len(report.damaged_rows), len(files)
    report.temp_files = len(_temp_files(images))
    report.quarantined = _count_files(root / QUARANTINE)
    return _Survey(report, db_rows, file_rows, key, key_id, unreadable, damaged_ids)


def check_store(root: Path, key_path: Path) -> Consistency:
    """Compare records and capture files (every file authenticated in full); changes nothing.

    Read-only, so it runs beside the service. StoreError when it cannot run (no store, the
    key missing or not this store's).
    """
    try:
        return _survey(Path(root), Path(key_path)).report
    except OSError as exc:
        raise StoreError(f"cannot check the capture store {root}: {exc}") from None


def repair_store(root: Path, key_path: Path) -> tuple[Consistency, list[str]]:
    """Make records and files agree again, deleting nothing; (what was found, what was done).

    Files that fail authentication move to ``quarantine/``. When the database is damaged, lost,
    or disagrees with the files, a new one is built from the files' authenticated records (and,
    for IDKC1 files, the rows that still decode); the old one is kept as
    ``captures.db.before-repair-<time>`` with its ``-wal``/``-shm``. Needs the writer lock.
    """
    root = Path(root)
    if not (root / IMAGES).is_dir():
        raise StoreError(f"no capture store at {root} ({IMAGES}/ missing)")
    lock_fd = _take_lock(root)
    try:
        return _repair(root, Path(key_path))
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(
            f"repair of the capture store {root} stopped: {exc}; nothing was deleted, "
            "fix the cause (free space? permissions?) and run it again"
        ) from None
    finally:
        os.close(lock_fd)


def _repair(root: Path, key_path: Path) -> tuple[Consistency, list[str]]:
    """:func:`repair_store` once it holds the writer lock."""
    survey = _survey(root, key_path)
    report, actions = survey.report, []
    temps = _temp_files(root / IMAGES)
    for path in temps:
        path.unlink()
    if temps:
        actions.append(f"removed {len(temps)} temp file(s) of saves that never completed")
    for path in survey.unreadable:
        target = _quarantine(root, path)
        actions.append(f"moved {path.name} to {target.relative_to(root)}")
    rows = {**survey.db_rows, **survey.file_rows}
    if (
        report.database != "ok"
        or report.damaged_rows
        or rows != survey.db_rows
        or survey.key_id is None
    ):
        backup = _rebuild(root, rows, key_fingerprint(survey.key))
        done = f"rebuilt {DB_NAME} with {len(rows)} record(s)"
        if report.files_without_row:
            done += f" ({len(report.files_without_row)} re-indexed from their files)"
        actions.append(
            done + (f"; the previous database is kept as {backup.name}" if backup else "")
        )
        lost = sum(1 for i in survey.damaged_ids if i not in survey.file_rows)
        if lost:
            actions.append(
                f"{lost} damaged record(s) had no readable capture file; "
                f"they are kept only in {backup.name if backup else DB_NAME}"
            )
    for action in actions:
        log.warning("capture store %s repair: %s", root, action)
    return report, actions


def _rebuild(root: Path, rows: dict[str, dict[str, Any]], fingerprint: str) -> Path | None:
    """Build a new database beside the old one, move the old aside (kept), rename the new in."""
    db_path = root / DB_NAME
    temp = root / f".{DB_NAME}.repair.tmp"
    for leftover in (temp, temp.with_name(temp.name + "-journal")):
        leftover.unlink(missing_ok=True)  # an earlier repair's unfinished build, never a store
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    temp.chmod(0o600)
    db = sqlite3.connect(temp, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        db.execute("BEGIN")
        for row in sorted(rows.values(), key=lambda r: (r["stored"], r["id"])):
            _insert(db, row)
        db.execute("INSERT INTO meta VALUES ('key_id', ?)", (fingerprint,))
        db.execute("COMMIT")
    finally:
        db.close()
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    old = [p for s in ("", "-wal", "-shm") if (p := root / f"{DB_NAME}{s}").exists()]
    backup = None
    if old:
        stamp = f"{DB_NAME}.before-repair-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        names = (stamp if n == 0 else f"{stamp}.{n}" for n in count())
        backup = next(root / n for n in names if not any(root.glob(f"{n}*")))
        for path in old:  # together, so SQLite still reads the kept copy with its log
            path.rename(backup.with_name(backup.name + path.name.removeprefix(DB_NAME)))
    temp.rename(db_path)
    fsync_dir(root)
    return backup
