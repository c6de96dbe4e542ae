"""`kiosk export` (decrypted captures, their token photos and, on request, print sheets, plus JSON
and CSV sidecars for the office's workflow) and
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

from kiosk.config import TokenConfig, load_config
from kiosk.contract.errors import ConfigError
from kiosk.contract.fileio import write_atomically
from kiosk.runtime.token.geometry import pick_format
from kiosk.runtime.token.render import print_sheet
from kiosk.service.store import (
    TOKEN,
    TOKEN_FRONTAL,
    CaptureStore,
    Consistency,
    StoreError,
    check_store,
    repair_store,
)

_CSV_FIELDS = ["id", "image", "session_id", "created", "stored", "decision", "verdict", "reasons"]
_OFFICE_FIELDS = ["case_ref", "operator", "kiosk_id"]
# Image role -> (key naming its file in records.json, file suffix).
_EXPORTED = {
    TOKEN: ("token_image", "_token.jpg"),
    TOKEN_FRONTAL: ("token_frontal_image", "_token_frontal.jpg"),
}


def export_captures(
    store: CaptureStore, out: Path, since: str | None, sheet_token: TokenConfig | None = None
) -> tuple[int, list[str]]:
    """Write ``<id>.jpg`` per capture, ``<id>_token.jpg`` and ``<id>_token_frontal.jpg`` where a
    token photo was stored, ``<id>_print.jpg`` (a print sheet of the token photo) when
    ``sheet_token`` is given, and ``records.json``/``records.csv``; (exported, errors)."""
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)  # decrypted portraits are personal data
    exported: list[dict[str, Any]] = []
    records, errors = store.list_with_errors(limit=None, since=since)
    for record in reversed(records):  # oldest first
        try:
            images = store.load_images(record["id"])
        except StoreError as exc:
            errors.append(str(exc))
            continue
        record["image"] = f"{record['id']}.jpg"
        write_atomically(out / record["image"], images["still"])
        for role, (key, suffix) in _EXPORTED.items():
            if role in images:
                record[key] = f"{record['id']}{suffix}"
                write_atomically(out / record[key], images[role])
        if sheet_token is not None and TOKEN in images:
            try:
                _name, fmt = pick_format(sheet_token, record["token"].get("format"))
                sheet = print_sheet(images[TOKEN], fmt, sheet_token.print_sheet)
            except (ConfigError, ValueError) as exc:
                errors.append(f"no print sheet for capture {record['id']}: {exc}")
            else:
                record["print_sheet"] = f"{record['id']}_print.jpg"
                write_atomically(out / record["print_sheet"], sheet)
        exported.append(record)
    write_atomically(out / "records.json", json.dumps(exported, indent=1).encode())
    write_atomically(out / "records.csv", _csv(exported).encode())
    return len(exported), errors


def _csv(records: list[dict[str, Any]]) -> str:
    """One flat row per capture: a score column per check, a column per forensic check (ok,
    flagged, error), the office fields (case, operator, kiosk, retakes), nested data as JSON."""
    checks = sorted({name for r in records for name in r["verdict"].get("checks", {})})
    forensic = sorted(
        {k for r in records for k, v in r["forensics"].items() if isinstance(v, dict)}
    )
    measured = [
        name
        for name in checks
        if any("value" in r["verdict"].get("checks", {}).get(name, {}) for r in records)
    ]
    buffer = io.StringIO()
    columns = [
        *_CSV_FIELDS,
        *(f"score_{c}" for c in checks),
        *(f"value_{c}" for c in measured),
        "token",
        "token_format",
        "forensics",
        "models",
        *(f"forensic_{k}" for k in forensic),
        *(f"forensic_{k}_score" for k in forensic),
        *_OFFICE_FIELDS,
        "retakes",
        "retake_reasons",
    ]
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    for r in records:
        verdict = r["verdict"]
        row = {key: r.get(key, "") for key in _CSV_FIELDS[:6]}
        row["verdict"] = verdict.get("decision", "")
        row["reasons"] = ";".join(verdict.get("reasons", []))
        for name in checks:
            row[f"score_{name}"] = verdict.get("checks", {}).get(name, {}).get("score", "")
        for name in measured:
            row[f"value_{name}"] = verdict.get("checks", {}).get(name, {}).get("value", "")
        row["token"] = r.get("token_image", "")
        row["token_format"] = r.get("token", {}).get("format", "")
        row["forensics"] = json.dumps(r["forensics"])
        row["models"] = json.dumps(r["models"])
        for key in forensic:
            result = r["forensics"].get(key)
            row[f"forensic_{key}"] = _forensic_status(result)
            row[f"forensic_{key}_score"] = (result or {}).get("score", "")
        office = r.get("office", {})
        for key in _OFFICE_FIELDS:
            row[key] = office.get(key, "")
        row["retakes"] = len(office.get("retakes", []))
        row["retake_reasons"] = ";".join(office.get("retakes", []))
        writer.writerow(row)
    return buffer.getvalue()


def _forensic_status(result: dict[str, Any] | None) -> str:
    """One word per forensic check: flagged, ok, error (the check failed to run) or not run."""
    if not result:
        return "not run"
    if "error" in result:
        return "error"
    return "flagged" if result.get("flagged") else "ok"


def _export(args: argparse.Namespace) -> int:
    full = load_config(args.config)
    config = full.store
    out = args.out or Path(f"captures-export-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    sheet_token = full.token if args.print_sheet else None
    try:
        with CaptureStore.from_config(config, readonly=True) as store:
            count, errors = export_captures(store, out, args.since, sheet_token)
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
        description="Decrypt the capture store ([store] in the config) into OUT: per capture "
        "the full-resolution JPEG (<id>.jpg) and, where one was stored, the token photo "
        "(<id>_token.jpg, at its format's dpi) and the ISO Token Frontal image "
        "(<id>_token_frontal.jpg); records.json / records.csv (verdict, every check's score "
        "and value, token geometry, forensics, model hashes, operator decision). Safe to run "
        "while the kiosk service is storing.",
    )
    export.add_argument(
        "--print-sheet",
        action="store_true",
        help="also write <id>_print.jpg: copies of the token photo at true size on the "
        "[token.print_sheet] sheet (10x15 cm, 300 dpi by default), with cutting guides",
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
