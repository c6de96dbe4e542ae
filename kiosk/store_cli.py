"""`kiosk export`: decrypted captures plus JSON and CSV sidecars for the office's workflow.

The store is opened read-only (committed rows only, no lock), so an export can run while the
kiosk service keeps storing. Exit codes: 0 all exported, 1 some capture could not be decrypted
(named on stderr, left out of the sidecars), 2 the store or its key cannot be opened.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kiosk.config import load_config
from kiosk.fileio import write_atomically
from kiosk.store import CaptureStore, StoreError

_CSV_FIELDS = ["id", "image", "session_id", "created", "stored", "decision", "verdict", "reasons"]


def export_captures(store: CaptureStore, out: Path, since: str | None) -> tuple[int, list[str]]:
    """Write ``<id>.jpg`` per capture and ``records.json``/``records.csv``; (exported, errors)."""
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)  # decrypted portraits are personal data
    exported: list[dict[str, Any]] = []
    errors = []
    for record in reversed(store.list(limit=None, since=since)):  # oldest first
        try:
            image = store.load_image(record["id"])
        except StoreError as exc:
            errors.append(str(exc))
            continue
        record["image"] = f"{record['id']}.jpg"
        write_atomically(out / record["image"], image)
        exported.append(record)
    write_atomically(out / "records.json", json.dumps(exported, indent=1).encode())
    write_atomically(out / "records.csv", _csv(exported).encode())
    return len(exported), errors


def _csv(records: list[dict[str, Any]]) -> str:
    """One flat row per capture: a score column per check, nested data as JSON text."""
    checks = sorted({name for r in records for name in r["verdict"].get("checks", {})})
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, [*_CSV_FIELDS, *(f"score_{c}" for c in checks), "forensics", "models"]
    )
    writer.writeheader()
    for r in records:
        verdict = r["verdict"]
        row = {key: r.get(key, "") for key in _CSV_FIELDS[:6]}
        row["verdict"] = verdict.get("decision", "")
        row["reasons"] = ";".join(verdict.get("reasons", []))
        for name in checks:
            row[f"score_{name}"] = verdict.get("checks", {}).get(name, {}).get("score", "")
        row["forensics"] = json.dumps(r["forensics"])
        row["models"] = json.dumps(r["models"])
        writer.writerow(row)
    return buffer.getvalue()


def _export(args: argparse.Namespace) -> int:
    config = load_config(args.config).store
    out = args.out or Path(f"captures-export-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    try:
        with CaptureStore.from_config(config, readonly=True) as store:
            count, errors = export_captures(store, out, args.since)
    except OSError as exc:
        print(f"kiosk export: cannot write {exc.filename or out}: {exc.strerror}", file=sys.stderr)
        return 2
    for error in errors:
        print(f"kiosk export: skipped: {error}", file=sys.stderr)
    print(f"exported {count} capture(s) to {out} (records.json, records.csv)")
    return 1 if errors else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `export` to the kiosk command line."""
    export = subparsers.add_parser(
        "export",
        help="decrypt stored captures, with JSON/CSV records, into a folder",
        description="Decrypt the capture store ([store] in the config) into OUT: one JPEG per "
        "capture and records.json / records.csv (verdict, scores, forensics, model hashes, "
        "operator decision). Safe to run while the kiosk service is storing.",
    )
    export.add_argument(
        "--out", type=Path, help="output folder (default captures-export-<UTC time>)"
    )
    export.add_argument(
        "--since",
        metavar="TIME",
        help="only captures created at or after this ISO time, e.g. 2026-11-21 or "
        "2026-11-21T09:00:00+01:00 (UTC if no offset)",
    )
    export.set_defaults(func=_export)
