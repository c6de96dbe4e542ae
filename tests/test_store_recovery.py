"""The store never loses a capture: every fault to its database ends with all images kept.

Faults: database deleted, write-ahead log lost after SIGKILL, database corrupted at several
offsets, replaced by garbage or truncated, a damaged row, the key missing or wrong. After each,
the store either recovers at open or names `kiosk store repair`, and after repair every image
decrypts with its original record. IDKC1 files (no record header) are still read and re-indexed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from test_service_loop import GOOD, make_config, replay, started  # noqa: F401 (fixture)

from kiosk.cli import main
from kiosk.service.store import (
    SUFFIX,
    UNKNOWN_DECISION,
    CaptureRecord,
    CaptureStore,
    StoreError,
    check_store,
    repair_store,
)

REPO = Path(__file__).resolve().parent.parent
N = 5


def image(i: int) -> bytes:
    return b"\xff\xd8" + bytes([i]) * (3000 + i)


def record(i: int) -> CaptureRecord:
    return CaptureRecord(
        f"session-{i}",
        "2026-11-21T15:00:00Z",
        "accept",
        verdict={"decision": "accept", "reasons": [], "checks": {"veil": {"score": i / 10}}},
        forensics={"jpeg_history": 0.5},
        models={"veil": "ab" * 32},
    )


@pytest.fixture()
def store(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    """A store with N captures; returns (root, key, the records as listed, oldest first)."""
    root, key = tmp_path / "captures", tmp_path / "capture.key"
    with CaptureStore(root, key) as writer:
        for i in range(N):
            writer.save(record(i), image(i))
        rows = sorted(writer.list(limit=None), key=lambda r: r["session_id"])
    return root, key, rows


def assert_all_kept(root: Path, key: Path, rows: list[dict]) -> None:
    """Every original capture is listed with its original record and decrypts to its image."""
    with CaptureStore(root, key) as reader:
        listed = sorted(reader.list(limit=None), key=lambda r: r["session_id"])
        assert listed == rows
        for i, row in enumerate(rows):
            assert reader.load_image(row["id"]) == image(i)
    assert check_store(root, key).problems() == []


def test_deleted_database_is_rebuilt_from_the_files(store):
    root, key, rows = store
    for path in root.glob("captures.db*"):
        path.unlink()
    with CaptureStore(root, key) as writer:
        assert writer.recovery.files_reindexed == N
        assert writer.recovery.problems() == []
    assert_all_kept(root, key, rows)


_WORKER = textwrap.dedent(
    """
    import os, signal, sys
    from kiosk.service.store import CaptureRecord, CaptureStore
    store = CaptureStore(sys.argv[1], sys.argv[2])
    for i in range(int(sys.argv[3])):
        store.save(CaptureRecord(f"s{i}", "2026-11-21T15:00:00Z", "accept"), bytes([i]) * 999)
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: the WAL holds everything
    """
)


def test_wal_lost_after_sigkill_loses_nothing(tmp_path):
    root, key = tmp_path / "captures", tmp_path / "capture.key"
    worker = subprocess.run(
        [sys.executable, "-c", _WORKER, str(root), str(key), "20"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert worker.returncode == -signal.SIGKILL
    assert (root / "captures.db-wal").stat().st_size > 0
    for path in root.glob("captures.db-*"):
        path.unlink()  # before a checkpoint the WAL held even the table definitions
    with CaptureStore(root, key) as writer:
        assert writer.recovery.files_reindexed == 20
        listed = writer.list(limit=None)
        assert sorted(r["session_id"] for r in listed) == sorted(f"s{i}" for i in range(20))
        for row in listed:
            assert writer.load_image(row["id"]) == bytes([int(row["session_id"][1:])]) * 999
    assert len(list((root / "images").iterdir())) == 20


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + 16, len(data))):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))


# Header, schema page, the captures table's cells (rows), the index page.
@pytest.mark.parametrize("offset", [0, 16, 100, 4096, 4104, 7000, 7500, 7900, 8100, 12288])
def test_corrupted_database_is_named_and_repair_keeps_every_capture(store, offset):
    root, key, rows = store
    _flip(root / "captures.db", offset)
    try:
        with CaptureStore(root, key) as writer:  # damaged rows: the service still stores
            _records, errors = writer.list_with_errors(limit=None)
            assert len(errors) == writer.recovery.damaged_rows == 1
    except StoreError as exc:  # a clear message, never a raw sqlite3/Unicode error
        assert "kiosk store repair" in str(exc)
    assert check_store(root, key).problems()  # every one of these is found
    repair_store(root, key)
    assert_all_kept(root, key, rows)
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(
        f"{r['id']}{SUFFIX}" for r in rows
    )


@pytest.mark.parametrize("damage", ["garbage", "truncated", "not sqlite"])
def test_database_replaced_or_truncated_is_refused_then_repaired(store, damage, tmp_path):
    root, key, rows = store
    db = root / "captures.db"
    if damage == "garbage":
        db.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        os.truncate(db, 5000)
    else:
        db.write_text("hello")
    with pytest.raises(StoreError, match=r"captures\.db is damaged .*kiosk store repair"):
        CaptureStore(root, key)
    with pytest.raises(StoreError, match="damaged"):
        CaptureStore(root, key, readonly=True)
    damaged = db.read_bytes()
    report, actions = repair_store(root, key)
    assert report.database.startswith("damaged")
    [backup] = root.glob("captures.db.before-repair-*Z")  # with its -wal/-shm, if any
    assert backup.read_bytes() == damaged  # kept, not deleted
    assert any("rebuilt captures.db with 5 record(s)" in a for a in actions)
    assert_all_kept(root, key, rows)
    assert oct(db.stat().st_mode & 0o777) == "0o600"


def test_bad_rows_are_skipped_by_export_and_rebuilt_by_repair(store, tmp_path, capsys):
    root, key, rows = store
    db = sqlite3.connect(root / "captures.db")
    db.execute("UPDATE captures SET verdict = '{not json' WHERE id = ?", (rows[1]["id"],))
    db.execute(
        "UPDATE captures SET session_id = CAST(X'FFFE' AS TEXT) WHERE id = ?", (rows[2]["id"],)
    )
    db.execute("UPDATE captures SET decision = 'retake' WHERE id = ?", (rows[3]["id"],))
    db.commit()
    db.close()
    with CaptureStore(root, key) as writer:  # the service still opens and stores
        assert writer.recovery.damaged_rows == 2
        assert len(writer.list(limit=None)) == N - 2
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[store]\ndir = "{root}"\nkey_file = "{key}"\n')
    out = tmp_path / "out"
    assert main(["--config", str(config), "export", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("skipped: record") == 2 and "damaged (JSONDecodeError)" in err
    assert len(json.loads((out / "records.json").read_text())) == N - 2

    assert main(["--config", str(config), "store", "check"]) == 1
    text = capsys.readouterr().out
    assert "2 damaged record(s)" not in text  # the altered decision is caught too: 3
    assert "3 damaged record(s)" in text and "differs from its file's" in text
    assert main(["--config", str(config), "store", "repair"]) == 1
    assert "rebuilt captures.db with 5 record(s)" in capsys.readouterr().out
    assert_all_kept(root, key, rows)
    assert main(["--config", str(config), "store", "check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["consistent"] is True
    assert main(["--config", str(config), "store", "repair"]) == 0


def test_missing_key_with_captures_is_never_replaced(store):
    root, key, rows = store
    office_copy = key.read_bytes()
    key.unlink()
    with pytest.raises(StoreError, match=r"is missing.*restore it from the office's copy"):
        CaptureStore(root, key)
    for path in root.glob("captures.db*"):  # even with the database gone: the files remain
        path.unlink()
    with pytest.raises(StoreError, match="is missing"):
        CaptureStore(root, key)
    assert not key.exists()
    with pytest.raises(StoreError, match="is missing"):
        repair_store(root, key)
    key.write_bytes(office_copy)  # what `cp -n office-copy capture.key` does
    assert_all_kept(root, key, rows)


def test_wrong_key_on_a_lost_database_is_refused_not_quarantined(store, tmp_path):
    root, key, rows = store
    (root / "captures.db").unlink()
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    with pytest.raises(StoreError, match=r"opens none of the 5 capture file\(s\)"):
        CaptureStore(root, other)
    with pytest.raises(StoreError, match="opens none"):
        check_store(root, other)
    assert not (root / "quarantine").exists()
    assert_all_kept(root, key, rows)


def _write_idkc1(root: Path, key: Path, capture_id: str, jpeg: bytes) -> None:
    nonce = os.urandom(12)
    sealed = AESGCM(key.read_bytes()).encrypt(nonce, jpeg, capture_id.encode())
    (root / "images" / f"{capture_id}{SUFFIX}").write_bytes(b"IDKC1" + nonce + sealed)


def test_idkc1_files_are_read_and_reindexed(store):
    root, key, _rows = store
    legacy = "20251001T120000Z-0123456789ab"
    _write_idkc1(root, key, legacy, b"\xff\xd8legacy")
    with CaptureStore(root, key) as writer:  # a file without a row, and no record header
        assert writer.recovery.files_reindexed == 1
        [row] = writer.list(limit=None, since="2025-01-01")[-1:]
        assert row["id"] == legacy and row["decision"] == UNKNOWN_DECISION
        assert row["created"] == "2025-10-01T12:00:00.000000Z"
        assert writer.load_image(legacy) == b"\xff\xd8legacy"
    os.truncate(root / "captures.db", 0)  # the database lost: repair rebuilds all N + 1
    report, _actions = repair_store(root, key)
    with CaptureStore(root, key) as reader:
        assert reader.load_image(legacy) == b"\xff\xd8legacy"
        assert len(reader.list(limit=None)) == N + 1
    assert report.files == N + 1


def test_legacy_row_kept_by_repair_when_it_still_decodes(store):
    root, key, rows = store
    legacy = "20251001T120000Z-0123456789ab"
    _write_idkc1(root, key, legacy, b"\xff\xd8legacy")
    with CaptureStore(root, key) as writer:
        writer._db.execute(
            "UPDATE captures SET session_id = 'old', decision = 'accept' WHERE id = ?", (legacy,)
        )
    db = sqlite3.connect(root / "captures.db")  # damage another row, so repair rebuilds
    db.execute("UPDATE captures SET models = 'x' WHERE id = ?", (rows[0]["id"],))
    db.commit()
    db.close()
    repair_store(root, key)
    with CaptureStore(root, key) as reader:
        [row] = [r for r in reader.list(limit=None) if r["id"] == legacy]
        assert (row["session_id"], row["decision"]) == ("old", "accept")
    assert_all_kept_except(root, key, rows, legacy)


def assert_all_kept_except(root: Path, key: Path, rows: list[dict], extra: str) -> None:
    with CaptureStore(root, key) as reader:
        listed = [r for r in reader.list(limit=None) if r["id"] != extra]
        assert sorted(listed, key=lambda r: r["session_id"]) == rows


def test_unreadable_files_are_quarantined_never_deleted(store, tmp_path, capsys):
    root, key, rows = store
    images = root / "images"
    stray = images / f"20260101T000000Z-00000000000a{SUFFIX}"
    stray.write_bytes(b"IDKC2" + os.urandom(100))
    renamed = images / f"20260101T000000Z-00000000000b{SUFFIX}"
    renamed.write_bytes((images / f"{rows[0]['id']}{SUFFIX}").read_bytes())
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[store]\ndir = "{root}"\nkey_file = "{key}"\n')
    assert main(["--config", str(config), "store", "check", "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert len(found["unreadable_files"]) == 2 and found["consistent"] is False
    with CaptureStore(root, key) as holder:  # the service holds the lock: repair cannot run
        assert main(["--config", str(config), "store", "repair"]) == 2
        assert "stop the kiosk service" in capsys.readouterr().err
        assert holder.recovery.files_quarantined == 2
    kept = sorted(p.name for p in (root / "quarantine").iterdir())
    assert kept == sorted([stray.name, renamed.name])
    assert main(["--config", str(config), "store", "check"]) == 1  # someone must look at them
    assert "2 file(s) in quarantine/" in capsys.readouterr().out
    assert_all_kept_except(root, key, rows, "")


def test_check_and_repair_cannot_run_without_a_store(tmp_path, capsys):
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[store]\ndir = "{tmp_path / "none"}"\nkey_file = "{tmp_path / "k"}"\n')
    assert main(["--config", str(config), "store", "check"]) == 2
    assert "no capture store" in capsys.readouterr().err
    assert main(["--config", str(config), "store", "repair"]) == 2


def test_database_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        with CaptureStore(tmp_path / "captures", tmp_path / "capture.key") as writer:
            writer.save(record(0), image(0))
            modes = {
                p.name: oct(p.stat().st_mode & 0o777)
                for p in (tmp_path / "captures").glob("captures.db*")
            }
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(["captures.db", "captures.db-wal", "captures.db-shm"], "0o600")
    legacy = tmp_path / "captures" / "captures.db"
    legacy.chmod(0o644)  # made by an older version outside systemd
    CaptureStore(tmp_path / "captures", tmp_path / "capture.key").close()
    assert oct(legacy.stat().st_mode & 0o777) == "0o600"


def test_service_reports_a_damaged_store_and_keeps_running(tmp_path, started):  # noqa: F811
    config = make_config(tmp_path)
    root = Path(config.store.path)
    CaptureStore(root, Path(config.store.key_path)).close()
    (root / "captures.db").write_bytes(b"garbage" * 1000)
    service = started(config, replay([GOOD]))
    assert not service.snapshot()["store"]["ok"]
    code, body = service.health()
    assert code == 503 and not service.stopped  # no photo can be kept, but the service runs
    assert any("damaged" in p and "kiosk store repair" in p for p in body["problems"])

    def broken(_config: object) -> CaptureStore:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    other = started(make_config(tmp_path / "b"), replay([GOOD]), store_opener=broken)
    assert "unexpected UnicodeDecodeError" in other.snapshot()["store"]["error"]
