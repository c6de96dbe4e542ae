"""Capture store: encrypted image files plus one SQLite (WAL) row per capture.

Layout under ``root``: ``captures.db`` (SQLite, WAL, ``synchronous=FULL``), ``images/<id>.cap``
(one encrypted capture each) and ``store.lock`` (held by the one writer).

Commit protocol of :meth:`CaptureStore.save` (the database commit is the commit point):

1. encrypt the JPEG (AES-256-GCM, random 96-bit nonce, the capture id as associated data, so a
   file renamed to another id fails authentication);
2. write it to ``images/.<id>.cap.<random>.tmp``, fsync the file, rename it to
   ``images/<id>.cap``, fsync the directory (``kiosk.fileio.write_atomically``): the file is now
   durable but not yet a capture;
3. insert the row in one transaction and commit (durable with WAL + ``synchronous=FULL``).

A crash before step 3 commits leaves a temp file or a file without a row, never a row without
its file. Recovery, run when a writer opens the store, deletes every ``.tmp`` file and every
``.cap`` file that has no row, so after it: every row has its file and every file its row. A row
whose file is missing can only come from outside (manual deletion, disk damage); recovery counts
and logs it and :meth:`CaptureStore.load_image` reports it. Readers (``kiosk export``) open the
database read-only and see committed rows only, so they can run beside the service.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kiosk.errors import KioskError
from kiosk.fileio import fsync_dir, write_atomically

if TYPE_CHECKING:
    from kiosk.config import StoreConfig

log = logging.getLogger(__name__)

DB_NAME = "captures.db"
IMAGES = "images"
SUFFIX = ".cap"
KEY_BYTES = 32
_MAGIC = b"IDKC1"  # file format: magic, 12-byte nonce, AES-GCM ciphertext + tag
_NONCE = 12
_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}$")
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
    stored TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS captures_created ON captures (created);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreError(KioskError):
    """A capture that cannot be stored or read (disk full, I/O error, wrong key, missing file)."""


@dataclass(frozen=True)
class CaptureRecord:
    """What is stored with each capture image; plain JSON-able data.

    ``created`` is an ISO 8601 time (UTC if it has no offset), stored normalized to UTC;
    ``decision`` is the operator's ("accept", "retake", ...); ``verdict`` is
    ``Verdict.as_record(...)``; ``models`` maps model name to the sha256 that produced it.
    """

    session_id: str
    created: str
    decision: str
    verdict: dict[str, Any] = field(default_factory=dict)
    forensics: dict[str, Any] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recovery:
    """What opening the store as writer cleaned up (all zero after a clean shutdown)."""

    temp_files_removed: int = 0
    orphan_files_removed: int = 0
    rows_missing_file: int = 0


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
    """Read the 32-byte store key; create it (mode 0600, atomically, never overwriting) if allowed."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise StoreError(
                f"capture key file {path} is missing; without it the stored captures cannot "
                "be decrypted: restore it from the office's copy ([store] key_file)"
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


def _new_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


class CaptureStore:
    """Encrypted capture images with their records; see the module docstring for the protocol.

    One writer per store (an exclusive lock on ``store.lock``); ``readonly=True`` opens for
    reading beside a running writer (no lock, no recovery, no key creation). Methods are
    thread-safe (one connection behind a lock), so a service thread can save while the console
    lists.
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
                    raise StoreError(f"no capture store at {self.root} ({DB_NAME} missing)")
                self._db = sqlite3.connect(
                    f"file:{db_path}?mode=ro", uri=True, check_same_thread=False
                )
            else:
                self.images.mkdir(parents=True, exist_ok=True)
                self._lock_fd = self._take_lock()
                self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
            has_rows = self._db.execute("SELECT 1 FROM captures LIMIT 1").fetchone() is not None
            key = load_or_create_key(Path(key_path), create=not readonly)
            self._aead = AESGCM(key)
            self._check_key_matches(key, has_rows)
            self.recovery = Recovery() if readonly else self._recover()
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"capture database {db_path} cannot be opened: {exc}") from None
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

    def save(self, record: CaptureRecord, image_jpeg: bytes) -> str:
        """Encrypt and store one capture; returns its id. StoreError leaves nothing behind."""
        if self.readonly:
            raise StoreError("the capture store was opened read-only")
        if not image_jpeg:
            raise StoreError("refusing to store an empty capture image")
        created = utc_iso(record.created)
        try:
            row_json = [json.dumps(v) for v in (record.verdict, record.forensics, record.models)]
        except (TypeError, ValueError) as exc:
            raise StoreError(f"capture record is not JSON-serializable: {exc}") from None
        with self._mutex:
            self._check_free_space(len(image_jpeg))
            capture_id = _new_id()
            final = self.images / f"{capture_id}{SUFFIX}"
            self._write_file(final, self._encrypt(capture_id, image_jpeg))
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO captures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        capture_id,
                        record.session_id,
                        created,
                        record.decision,
                        *row_json,
                        len(image_jpeg),
                        utc_iso(datetime.now(UTC).isoformat()),
                    ),
                )
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

    def _encrypt(self, capture_id: str, image: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _MAGIC + nonce + self._aead.encrypt(nonce, image, capture_id.encode())

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
        """Records newest first (at most ``limit``; None: all), optionally created >= ``since``."""
        query = "SELECT * FROM captures"
        params: list[Any] = []
        if since is not None:
            query += " WHERE created >= ?"
            params.append(utc_iso(since))
        query += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        with self._mutex:
            cursor = self._db.execute(query, params)
            names = [c[0] for c in cursor.description]
            rows = cursor.fetchall()
        records = []
        for row in rows:
            record = dict(zip(names, row, strict=True))
            for key in ("verdict", "forensics", "models"):
                record[key] = json.loads(record[key])
            records.append(record)
        return records

    def load_image(self, capture_id: str) -> bytes:
        """The decrypted JPEG bytes of a capture; StoreError if unknown, missing or altered."""
        if not _ID.match(capture_id):
            raise StoreError(f"{capture_id!r} is not a capture id")
        with self._mutex:
            known = self._db.execute("SELECT 1 FROM captures WHERE id = ?", (capture_id,))
            if known.fetchone() is None:
                raise StoreError(f"no capture {capture_id} in {self.root}")
        path = self.images / f"{capture_id}{SUFFIX}"
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise StoreError(
                f"image of capture {capture_id} is unreadable: {exc.strerror}"
            ) from None
        head = len(_MAGIC) + _NONCE
        if content[: len(_MAGIC)] != _MAGIC or len(content) < head + 16:
            raise StoreError(f"image file of capture {capture_id} is not a capture file")
        try:
            return self._aead.decrypt(
                content[len(_MAGIC) : head], content[head:], capture_id.encode()
            )
        except InvalidTag:
            raise StoreError(
                f"image of capture {capture_id} failed authentication: altered, or the key "
                "is not this store's"
            ) from None

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

    def _take_lock(self) -> int:
        fd = os.open(self.root / "store.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"capture store {self.root} is in use by another process (store.lock); "
                "only one kiosk service may write to it"
            ) from None
        return fd

    def _check_key_matches(self, key: bytes, has_rows: bool) -> None:
        """A fingerprint of the key in the database catches a swapped key before any save."""
        fingerprint = hashlib.sha256(b"idkiosk capture key id\0" + key).hexdigest()[:16]
        row = self._db.execute("SELECT value FROM meta WHERE name = 'key_id'").fetchone()
        if row is None:
            if has_rows:
                raise StoreError(f"capture store {self.root} has captures but no key fingerprint")
            if not self.readonly:
                self._db.execute("INSERT INTO meta VALUES ('key_id', ?)", (fingerprint,))
        elif row[0] != fingerprint:
            raise StoreError(
                f"the capture key file is not the one this store at {self.root} was created "
                "with; restore the right key ([store] key_file)"
            )

    def _recover(self) -> Recovery:
        ids = {row[0] for row in self._db.execute("SELECT id FROM captures")}
        temps = orphans = 0
        for path in self.images.iterdir():
            if path.name.startswith(".") and path.suffix == ".tmp":
                path.unlink()
                temps += 1
            elif path.suffix == SUFFIX and path.stem not in ids:
                path.unlink()
                orphans += 1
        on_disk = {p.stem for p in self.images.glob(f"*{SUFFIX}")}
        missing = len(ids - on_disk)
        if temps or orphans:
            fsync_dir(self.images)
            log.info("capture store recovery: removed %d temp and %d orphan files", temps, orphans)
        if missing:
            log.error(
                "capture store %s: %d record(s) have no image file (deleted outside the kiosk?)",
                self.root,
                missing,
            )
        return Recovery(temps, orphans, missing)
