"""`kiosk forensics PATH... [--json] [--out DIR]`: the forensic pass over image files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kiosk.analysis import FACE_TOO_SMALL, FaceAnalyzer
from kiosk.config import load_config
from kiosk.errors import KioskError
from kiosk.forensics.suite import Artifacts, Capture, ForensicSuite
from kiosk.sources import Frame, open_path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("forensics", help="JPEG history, tamper and super-resolution checks")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="write heat maps and super-resolved faces here"
    )
    parser.set_defaults(func=cmd_forensics)


def cmd_forensics(args: argparse.Namespace) -> int:
    """Exit 0 nothing flagged, 1 something flagged, 2 some image errored or no check could run."""
    from kiosk.pipeline import CompliancePipeline

    config = load_config(args.config)
    try:
        suite = ForensicSuite.from_config(config)
        analyzer = CompliancePipeline(config).analyzer if suite.needs_face else None
    except KioskError as exc:
        print(f"kiosk: cannot start the forensic checks: {exc}", file=sys.stderr)
        return 2
    if not suite.checks:
        print("kiosk: no forensic model is listed in the manifest", file=sys.stderr)
        return 2
    flagged = errors = 0
    max_pixels = int(config.input.max_megapixels * 1e6)
    for spec in args.paths:
        source = open_path(Path(spec), max_pixels=max_pixels)
        try:
            for frame in source.frames():
                record = _examine(suite, analyzer, frame, args.out)
                errors += record["error"] is not None
                flagged += any(isinstance(v, dict) and v.get("flagged") for v in record.values())
                print(json.dumps(record) if args.json else _human_line(record), flush=True)
        finally:
            source.close()
    return 2 if errors else (1 if flagged else 0)


def _examine(
    suite: ForensicSuite, analyzer: FaceAnalyzer | None, frame: Frame, out: Path | None
) -> dict[str, Any]:
    record: dict[str, Any] = {"source": frame.source}
    if frame.image is None:
        return {**record, "error": frame.error or "unreadable image"}
    face = None
    if analyzer is not None:
        analysis = analyzer.analyze(frame.image)
        if analysis.face is not None and analysis.reason in (None, FACE_TOO_SMALL):
            face = analysis.face.box
    stem = Path(frame.source).stem + (f"_{frame.index:05d}" if frame.index else "")
    try:
        record.update(suite.run(Capture(frame.image, face), Artifacts(out, stem)))
    except KioskError as exc:
        return {**record, "error": str(exc)}
    return {**record, "error": None}


def _human_line(record: dict[str, Any]) -> str:
    if record["error"]:
        return f"{record['source']}: ERROR {record['error']}"
    parts = []
    for key, value in record.items():
        if key in ("source", "error") or not isinstance(value, dict):
            continue
        if "error" in value:
            parts.append(f"{key} error: {value['error']}")
        elif "score" in value:
            mark = "FLAGGED" if value.get("flagged") else "ok"
            parts.append(f"{key} {value['score']:.3f}/{value['threshold']:.3f} {mark}")
        else:
            parts.append(f"{key} {json.dumps(value)}")
    return f"{record['source']}: " + "; ".join(parts)
