"""`kiosk export` (decrypted captures plus JSON and CSV sidecars for the office's workflow) and
`kiosk store check|repair` (records and capture files agree; see docs/store.md).

Export and check open the store read-only (committed rows only, no lock), so they run while the
kiosk service keeps storing; repair needs the service stopped. Exit codes of export: 0 all
exported, 1 some capture could not be decrypted or its record is damaged (named on stderr, left
out of the sidecars), 2 the store or its key cannot be opened.
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
from kiosk.contract.fileio import write_atomically
from kiosk.service.store import CaptureStore, Consistency, StoreError, check_store, repair_store

_CSV_FIELDS = ["id", "image", "session_id", "created", "stored", "decision", "verdict", "reasons"]


def export_captures(store: CaptureStore, out: Path, since: str | None) -> tuple[int, list[str]]:
    """Write ``<id>.jpg`` per capture and ``records.json``/``records.csv``; (exported, errors)."""
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)  # decrypted portraits are personal data
    exported: list[dict[str, Any]] = []
    records, errors = store.list_with_errors(limit=None, since=since)
    for record in reversed(records):  # oldest first
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


def _print_consistency(report: Consistency, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_record()))
        return
    print(
        f"database: {report.database}; {report.records} record(s), {report.files} capture "
        f"file(s), {report.quarantined} in quarantine, {report.temp_files} temp file(s)"
    )
    details = {
        "record without file": report.rows_missing_file,
        "file without record": report.files_without_row,
        "unreadable": report.unreadable_files,
        "damaged record": report.damaged_rows,
    }
    for label, items in details.items():
        for item in items:
            print(f"  {label}: {item}")
    for problem in report.problems():
        print(f"problem: {problem}")


def _store_check(args: argparse.Namespace) -> int:
    config = load_config(args.config).store
    report = check_store(config.path, config.key_path)
    _print_consistency(report, args.json)
    if not args.json:
        print(
            "consistent" if not report.problems() else "run `kiosk store repair` (service stopped)"
        )
    return 1 if report.problems() else 0


def _store_repair(args: argparse.Namespace) -> int:
    config = load_config(args.config).store
    report, actions = repair_store(config.path, config.key_path)
    if args.json:
        print(json.dumps({**report.as_record(), "actions": actions}))
    else:
        _print_consistency(report, as_json=False)
        for action in actions:
            print(f"repaired: {action}")
        if not actions:
            print("nothing to repair" if not report.problems() else "nothing repair can change")
    return 1 if actions or report.problems() else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `export` and `store check|repair` to the kiosk command line."""
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

    store = subparsers.add_parser(
        "store",
        help="check or repair the capture store",
        description="Check that capture records and capture files agree, or repair them. "
        "Nothing is ever deleted: files that fail authentication move to quarantine/, a "
        "damaged database is kept beside the one rebuilt from the capture files. Exit codes: "
        "0 consistent (check) / nothing to repair (repair), 1 problems found / repaired, "
        "2 cannot run (no store, key missing or not this store's, service running for repair).",
    )
    actions = store.add_subparsers(dest="store_command", required=True)
    check = actions.add_parser(
        "check",
        help="report records without files, files without records, unreadable files, quarantine",
        description="Read-only (safe while the service runs); every capture file is decrypted "
        "and authenticated.",
    )
    repair = actions.add_parser(
        "repair",
        help="rebuild records from the capture files; quarantine unreadable files",
        description="Needs the kiosk service stopped (it takes the writer lock). Rebuilds "
        "missing or damaged records from each file's authenticated record, moves files that "
        "fail authentication to quarantine/, keeps a damaged database as "
        "captures.db.before-repair-<time>.",
    )
    for parser, func in ((check, _store_check), (repair, _store_repair)):
        parser.add_argument("--json", action="store_true", help="one JSON object")
        parser.set_defaults(func=func)
