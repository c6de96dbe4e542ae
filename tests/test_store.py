"""Capture store: round trip, encryption at rest, refusals, and crash consistency under SIGKILL."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kiosk.config import parse_config
from kiosk.contract.errors import ConfigError
from kiosk.service import store as store_module
from kiosk.service.store import SUFFIX, CaptureRecord, CaptureStore, StoreError

REPO = Path(__file__).resolve().parent.parent


def image_for(session_id: str, size: int = 5000) -> bytes:
    """Deterministic fake JPEG bytes, so a reader can check content against the record."""
    block = hashlib.sha256(session_id.encode()).digest()
    return b"\xff\xd8" + (block * (size // len(block) + 1))[:size]


def record(session_id: str = "s1", decision: str = "accept") -> CaptureRecord:
    verdict = {"decision": "accept", "reasons": [], "checks": {"veil": {"score": 0.01}}}
    return CaptureRecord(
        session_id=session_id,
        created="2026-11-21T15:04:05+01:00",
        decision=decision,
        verdict=verdict,
        forensics={"jpeg_history": 0.02},
        models={"veil": "ab" * 32},
    )


@pytest.fixture()
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "captures", tmp_path / "keys" / "capture.key"


def assert_consistent(root: Path, key: Path) -> int:
    """Open as writer (recovery), then check rows == files, no temp files, every file decrypts."""
    with CaptureStore(root, key) as store:
        assert store.recovery.rows_missing_file == 0
        rows = store.list(limit=None)
        files = sorted(p.stem for p in (root / "images").iterdir())
        assert files == sorted(r["id"] for r in rows)
        for row in rows:
            assert store.load_image(row["id"]) == image_for(
                row["session_id"], row["image_bytes"] - 2
            )
        return len(rows)


def test_round_trip_and_listing(paths):
    root, key = paths
    with CaptureStore(root, key) as store:
        first = store.save(record("a"), image_for("a"))
        second = store.save(record("b", "retake"), image_for("b"))
        assert store.load_image(first) == image_for("a")
        listed = store.list()
        assert [r["id"] for r in listed] == [
            second,
            first,
        ]  # newest first (same created: last stored first)
        assert listed[0]["decision"] == "retake"
        assert listed[0]["created"] == "2026-11-21T14:04:05.000000Z"  # normalized to UTC
        assert listed[0]["verdict"]["checks"]["veil"]["score"] == 0.01
        assert listed[0]["models"] == {"veil": "ab" * 32}
        assert store.list(limit=1) == listed[:1]
        assert store.list(since="2026-11-21T15:00:00Z") == []
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    with CaptureStore(root, key, readonly=True) as reader:
        assert len(reader.list()) == 2


def test_images_are_encrypted_and_bound_to_their_id(paths):
    root, key = paths
    with CaptureStore(root, key) as store:
        first = store.save(record("a"), image_for("a"))
        second = store.save(record("b"), image_for("b"))
        content = (root / "images" / f"{first}{SUFFIX}").read_bytes()
        assert image_for("a")[:64] not in content
        # A file moved under another capture's id fails authentication (id = associated data).
        (root / "images" / f"{second}{SUFFIX}").write_bytes(content)
        with pytest.raises(StoreError, match="failed authentication"):
            store.load_image(second)
        flipped = bytearray(content)
        flipped[-1] ^= 1
        (root / "images" / f"{first}{SUFFIX}").write_bytes(bytes(flipped))
        with pytest.raises(StoreError, match="failed authentication"):
            store.load_image(first)
        with pytest.raises(StoreError, match="not a capture id"):
            store.load_image("../../etc/passwd")
        with pytest.raises(StoreError, match="no capture"):
            store.load_image("20260101T000000Z-000000000000")


def test_wrong_or_missing_key_is_refused(paths, tmp_path):
    root, key = paths
    with CaptureStore(root, key) as store:
        store.save(record(), image_for("s1"))
    (tmp_path / "other.key").write_bytes(os.urandom(32))
    with pytest.raises(StoreError, match="not the one this store"):
        CaptureStore(root, tmp_path / "other.key")
    office_copy = key.read_bytes()
    key.unlink()
    for readonly in (True, False):
        with pytest.raises(StoreError, match=r"key file .* is missing.*never creates a new key"):
            CaptureStore(root, key, readonly=readonly)
    assert not key.exists()  # so restoring the office's copy with `cp -n` works
    key.write_bytes(office_copy)
    with CaptureStore(root, key) as store:
        assert len(store.list()) == 1
    key.write_bytes(b"short")
    with pytest.raises(StoreError, match="holds 5 bytes"):
        CaptureStore(root, key)


def test_corrupt_database_is_named(paths):
    root, key = paths
    root.mkdir()
    (root / "captures.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match=r"captures\.db is damaged .*run `kiosk store repair`"):
        CaptureStore(root, key)


def test_one_writer_at_a_time(paths):
    root, key = paths
    with CaptureStore(root, key) as store:
        with pytest.raises(StoreError, match="in use by another process"):
            CaptureStore(root, key)
        store.save(record(), image_for("s1"))
        with CaptureStore(root, key, readonly=True) as reader:
            assert len(reader.list()) == 1
            with pytest.raises(StoreError, match="read-only"):
                reader.save(record(), image_for("s1"))


def test_low_free_space_refuses_before_writing(paths):
    root, key = paths
    with CaptureStore(root, key, min_free_mb=10**9) as store:
        with pytest.raises(StoreError, match=r"min_free_mb.*export and remove old captures"):
            store.save(record(), image_for("s1"))
        assert store.list() == []
    assert list((root / "images").iterdir()) == []


def test_disk_full_while_writing_leaves_nothing(paths, monkeypatch):
    root, key = paths
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if len(data) > 100:  # the image, not the key
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    with CaptureStore(root, key) as store:
        monkeypatch.setattr(store_module.os, "write", full_disk)
        with pytest.raises(StoreError, match="No space left on device"):
            store.save(record(), image_for("s1"))
        monkeypatch.undo()
        assert store.list() == []
        assert list((root / "images").iterdir()) == []
        store.save(record(), image_for("s1"))  # the store still works afterwards
    assert assert_consistent(root, key) == 1


def test_database_failure_removes_the_image(paths):
    root, key = paths

    class FullDatabase:
        """Stands in for sqlite3 refusing the insert (e.g. "database or disk is full")."""

        def __init__(self, db):
            self.db = db
            self.in_transaction = False

        def execute(self, sql, *args):
            if sql.startswith("INSERT INTO captures"):
                raise store_module.sqlite3.OperationalError("database or disk is full")
            return self.db.execute(sql, *args)

    with CaptureStore(root, key) as store:
        real = store._db
        store._db = FullDatabase(real)
        with pytest.raises(StoreError, match="database or disk is full"):
            store.save(record(), image_for("s1"))
        store._db = real
    assert list((root / "images").iterdir()) == []
    assert assert_consistent(root, key) == 0


def test_recovery_removes_temp_files_and_quarantines_unreadable_orphans(paths):
    root, key = paths
    with CaptureStore(root, key) as store:
        kept = store.save(record(), image_for("s1"))
    (root / "images" / f".20260101T000000Z-0123456789ab{SUFFIX}.x1y2.tmp").write_bytes(b"part")
    (root / "images" / f"20260101T000000Z-0123456789ab{SUFFIX}").write_bytes(b"no row")
    with CaptureStore(root, key) as store:
        assert store.recovery.temp_files_removed == 1
        assert store.recovery.files_quarantined == 1
        assert store.recovery.quarantine_total == 1
        assert "1 capture file(s) in quarantine/" in store.recovery.problems()[0]
        kept_aside = root / "quarantine" / f"20260101T000000Z-0123456789ab{SUFFIX}"
        assert kept_aside.read_bytes() == b"no row"  # moved, never deleted
        (root / "images" / f"{kept}{SUFFIX}").unlink()
    with CaptureStore(root, key) as store:
        assert store.recovery.rows_missing_file == 1
        with pytest.raises(StoreError, match="unreadable"):
            store.load_image(kept)


def test_bad_time_and_bad_store_config_are_named():
    with pytest.raises(StoreError, match="not ISO 8601"):
        store_module.utc_iso("yesterday")
    with pytest.raises(ConfigError, match=r"store\.min_free_mb = -1 is outside"):
        parse_config({"store": {"min_free_mb": -1}})
    with pytest.raises(ConfigError, match=r"unknown key store\.path"):
        parse_config({"store": {"path": "x"}})


_WORKER = textwrap.dedent(
    """
    import hashlib, os, sys
    from kiosk.service.store import CaptureRecord, CaptureStore

    def image_for(session_id, size):
        block = hashlib.sha256(session_id.encode()).digest()
        return b"\\xff\\xd8" + (block * (size // len(block) + 1))[:size]

    store = CaptureStore(sys.argv[1], sys.argv[2])
    print("ready", flush=True)
    while True:
        session = os.urandom(8).hex()
        size = int.from_bytes(os.urandom(2), "big") * 4  # up to 256 KiB
        rec = CaptureRecord(session, "2026-11-21T15:00:00Z", "accept", {"decision": "accept"})
        store.save(rec, image_for(session, size))
    """
)


def test_sigkill_at_random_moments_keeps_the_store_consistent(paths):
    """40 storing processes killed at random moments; after each, rows == files, all decrypt."""
    root, key = paths
    rng = random.Random(5)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kills, started = 40, time.monotonic()
    for _ in range(kills):
        worker = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(root), str(key)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.05))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker.stdout.close()
        assert worker.returncode == -signal.SIGKILL
        assert_consistent(root, key)
    stored = assert_consistent(root, key)
    assert stored > kills  # the workers really were storing when killed
    assert time.monotonic() - started < 60


def test_token_photo_round_trip_and_roles_authenticated(paths):
    """The still, the token photo and its Token Frontal image are stored together; each is
    bound to its role, so swapping two of them fails authentication."""
    root, key = paths
    token = {"format": "icao_35x45", "geometry": {"head_ratio": 0.75}, "warnings": []}
    rec = CaptureRecord(**{**record("t").__dict__, "token": token})
    with CaptureStore(root, key) as store:
        capture_id = store.save(rec, image_for("t"), image_for("tok", 800), image_for("fr", 800))
        plain = store.save(record("p"), image_for("p"))
        images = store.load_images(capture_id)
        assert images == {
            "still": image_for("t"),
            "token": image_for("tok", 800),
            "token_frontal": image_for("fr", 800),
        }
        assert store.load_images(plain) == {"still": image_for("p")}
        row = next(r for r in store.list() if r["id"] == capture_id)
        assert row["token"] == {**token, "bytes": 802, "frontal_bytes": 802}
        assert next(r for r in store.list() if r["id"] == plain)["token"] == {}
        with pytest.raises(StoreError, match="Token Frontal"):
            store.save(record("x"), image_for("x"), None, b"\xff\xd8")
    path = root / "images" / f"{capture_id}{SUFFIX}"
    content = path.read_bytes()
    part = 12 + 802 + 16  # nonce, JPEG, tag: the last two parts are token and frontal
    swapped = content[: -2 * part] + content[-part:] + content[-2 * part : -part]
    path.write_bytes(swapped)
    with CaptureStore(root, key, readonly=True) as store:
        with pytest.raises(StoreError, match="failed authentication"):
            store.load_images(capture_id)
        path.write_bytes(content)
        assert store.load_images(capture_id)["token"] == image_for("tok", 800)


def test_older_store_and_files_still_read(paths):
    """An IDKC2 file and a database without the token column (an older kiosk) still read; the
    writer adds the column; a reader beside an unmigrated database sees empty token records."""
    import json as json_module
    import sqlite3

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    root, key = paths
    with CaptureStore(root, key) as store:
        capture_id = store.save(record("old"), image_for("old"))
        row = store.list()[0]
    # Rewrite it as an older kiosk did: IDKC2 file, database without the token column.
    aead = AESGCM(key.read_bytes())
    old_row = {k: v for k, v in row.items() if k != "token"}
    header_nonce, image_nonce = os.urandom(12), os.urandom(12)
    ident = capture_id.encode()
    header = aead.encrypt(
        header_nonce, json_module.dumps(old_row).encode(), b"IDKC2 record\0" + ident
    )
    image = aead.encrypt(image_nonce, image_for("old"), b"IDKC2 image\0" + ident)
    (root / "images" / f"{capture_id}{SUFFIX}").write_bytes(
        b"IDKC2" + len(header).to_bytes(4, "big") + header_nonce + header + image_nonce + image
    )
    db = sqlite3.connect(root / "captures.db")
    db.execute("ALTER TABLE captures DROP COLUMN token")
    db.commit()
    db.close()
    with CaptureStore(root, key, readonly=True) as reader:
        assert reader.list()[0]["token"] == {}
        assert reader.load_images(capture_id) == {"still": image_for("old")}
    with CaptureStore(root, key) as store:
        assert store.recovery.files_reindexed == 0
        assert store.load_image(capture_id) == image_for("old")
        assert store.list()[0]["token"] == {}
    assert store_module.check_store(root, key).problems() == []
