"""`kiosk` command line. `kiosk check PATH...` prints a verdict per frame.

Exit codes of `check`: 0 every frame accepted, 1 some frame rejected, 2 some frame errored (or
the pipeline could not start). Bad input never ends in a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import importlib
import json
import logging
import os
import re
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from kiosk import __version__
from kiosk.contract.errors import KioskError

if TYPE_CHECKING:
    from kiosk.runtime.cameras.sources import Frame
    from kiosk.runtime.pipeline import CompliancePipeline, TrackingPipeline, Verdict
    from kiosk.runtime.vision.analysis import Analysis

# Decisions, as kiosk.runtime.pipeline spells them (not imported: see COMMANDS).
ACCEPT, REJECT, ERROR = "accept", "reject", "error"

# Every subcommand other than `check`: the module that registers it and its one-line help.
# Only the module of the command being run is imported (issue 16: `kiosk check photo.jpg`
# answers in <= 0.5 s without the privacy tools' scipy, the store, forensics); the others are
# listed with this help. tests/test_tracking.py holds the lines equal to the modules' own.
COMMANDS = {
    "vsi": ("privacy", "visual security index of an encrypted image (higher = less secure)"),
    "diag": ("privacy", "privacy-safe diagnostic frames (encrypted, VSI-gated)"),
    "forensics": ("forensics", "JPEG history, tamper and super-resolution checks"),
    "calibrate": ("calibrate", "measure this camera's JPEG-history scores and store its threshold"),
    "run": ("run", "the capture service and its operator console"),
    "export": ("store", "decrypt stored captures, with JSON/CSV records, into a folder"),
    "store": ("store", "check or repair the capture store"),
    "bundle": ("bundle", "sign and verify model bundles (Ed25519 over manifest.json)"),
}

log = logging.getLogger("kiosk")


def _human_line(source: str, frame: int, verdict: Verdict) -> str:
    from kiosk.runtime.annotate import check_line

    where = f"{source}" + (f" #{frame}" if frame else "")
    if verdict.decision == ERROR:
        return f"{where}: ERROR {verdict.error}"
    details = ", ".join(
        check_line(name, r) + (" FAIL" if r.failed and not r.suppressed else "")
        for name, r in verdict.checks.items()
    )
    reasons = f" ({', '.join(verdict.reasons)})" if verdict.reasons else ""
    return f"{where}: {verdict.decision.upper()}{reasons}" + (f" [{details}]" if details else "")


def _annotation_path(out_dir: Path, source: str, frame: int) -> Path:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).name or source)
    return out_dir / f"{stem}_{frame:05d}.jpg"


def cmd_check(args: argparse.Namespace) -> int:
    from kiosk.config import load_config
    from kiosk.runtime.annotate import annotate, write_jpeg
    from kiosk.runtime.cameras.sources import open_source
    from kiosk.runtime.imageio import Limits
    from kiosk.runtime.pipeline import CompliancePipeline, TrackingPipeline

    config = load_config(args.config, args.models)
    try:
        pipeline = CompliancePipeline(config)
    except KioskError as exc:
        print(f"kiosk: cannot start the checks: {exc}", file=sys.stderr)
        return 2
    counts: Counter[str] = Counter()
    limits = Limits.from_config(config.input)
    work_pixels = int(config.input.work_megapixels * 1e6)
    # Video and camera frames are a stream: tracked between detections (docs/performance.md).
    # One tracker for the run, reset at each new stream (a tracker per PATH left its predecessor
    # for the cycle collector: RSS grew ~0.5 MiB per video, bench_memory.py --stream).
    tracking = TrackingPipeline(pipeline, config.tracking)
    for spec in args.paths:
        source = open_source(  # `picamera` is configured as `kiosk run` configures it
            spec,
            max_frames=args.max_frames,
            limits=limits,
            work_pixels=work_pixels,
            preview_width=config.service.preview_width,
        )
        stream = None
        try:
            for frame in source.frames():
                if frame.path is None and frame.source != stream:
                    stream = frame.source
                    tracking.reset()
                verdict, analysis = _check_frame(
                    pipeline, tracking if frame.path is None else None, frame
                )
                counts[verdict.decision] += 1
                _emit(args, frame.source, frame.index, _in_original_pixels(verdict, frame.scale))
                if args.annotate and frame.image is not None:
                    path = _annotation_path(args.annotate, frame.source, frame.index)
                    write_jpeg(path, annotate(frame.image, verdict, analysis))
        finally:
            source.close()
    total = sum(counts.values())
    summary = {
        "frames": total,
        ACCEPT: counts[ACCEPT],
        REJECT: counts[REJECT],
        ERROR: counts[ERROR],
    }
    if args.json:
        print(json.dumps({"summary": summary}))
    else:
        print(
            f"{total} frame(s): {counts[ACCEPT]} accepted, {counts[REJECT]} rejected, "
            f"{counts[ERROR]} errors"
        )
    if counts[ERROR]:
        return 2
    return 1 if counts[REJECT] else 0


def _in_original_pixels(verdict: Verdict, scale: float) -> Verdict:
    """The checks ran on a downscaled copy; the record's box is in the input's own pixels."""
    if scale == 1.0 or verdict.face_box is None:
        return verdict
    return dataclasses.replace(verdict, face_box=[round(v * scale, 1) for v in verdict.face_box])


def _check_frame(
    pipeline: CompliancePipeline, tracking: TrackingPipeline | None, frame: Frame
) -> tuple[Verdict, Analysis | None]:
    """A photo is checked from scratch; a video or camera frame through `tracking`."""
    from kiosk.runtime.pipeline import error_verdict

    if frame.image is None:
        return error_verdict(frame.error or "unreadable frame"), None
    try:
        # Resolution is judged in the input's own pixels, not the working copy's.
        return (tracking or pipeline).check(frame.image, still_scale=frame.scale)
    except (KioskError, ValueError) as exc:
        return error_verdict(str(exc)), None


def _emit(args: argparse.Namespace, source: str, frame: int, verdict: Verdict) -> None:
    if args.json:
        print(json.dumps(verdict.as_record(source, frame)), flush=True)
    else:
        print(_human_line(source, frame, verdict), flush=True)


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in `argv` (the first word that is not an option or its value)."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `kiosk` parser. With `argv`, only the named command's module is imported and the
    other commands are listed by name and help; without it every module registers fully."""
    from kiosk.config import CONFIG_ENV, PROJECT_CONFIG, SYSTEM_CONFIG

    parser = argparse.ArgumentParser(prog="kiosk", description="idkiosk: ID-photo capture kiosk")
    parser.add_argument("--version", action="version", version=f"idkiosk {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"TOML config (default: ${CONFIG_ENV}, else {SYSTEM_CONFIG}, else {PROJECT_CONFIG})",
    )
    parser.add_argument(
        "--validate-config",
        action="store_true",
        help="check the config file with the rules `kiosk run` applies, and exit (0 valid, "
        "2 invalid)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser("check", help="check photos, folders, videos or a camera")
    check.add_argument(
        "paths", nargs="+", metavar="PATH", help="image, folder, video file, camera[:N] or picamera"
    )
    check.add_argument("--json", action="store_true", help="one JSON object per frame")
    check.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT_DIR",
        help="write each frame with box, landmarks, crops and scores drawn",
    )
    check.add_argument(
        "--max-frames", type=int, default=None, help="stop a video or camera after this many frames"
    )
    check.add_argument(
        "--models",
        type=Path,
        metavar="DIR",
        help="model bundle to use instead of the config's [models] dir (every other setting "
        "kept: try a bundle before deploying it)",
    )
    check.set_defaults(func=cmd_check)
    command = None if argv is None else _command_of(argv)
    wanted = {m for name, (m, _) in COMMANDS.items() if argv is None or name == command}
    registered: set[str] = set()
    for name, (module, help_line) in COMMANDS.items():
        if module not in wanted:
            sub.add_parser(name, help=help_line)
        elif module not in registered:
            importlib.import_module(f"kiosk.cli.{module}").register(sub)
            registered.add(module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.validate_config:
            from kiosk.config import find_config, load_config

            path = find_config(args.config)
            load_config(path)
            print(f"config {path} is valid")
            return 0
        if not args.command:
            parser.print_help()
            return 2
        return args.func(args)
    except KioskError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def entry() -> NoReturn:
    """The `kiosk` program (console script and `python -m kiosk`): `main()`, then exit.

    After a one-shot command has answered, the interpreter's own teardown (finalising every
    module, freeing the landmark model and the interpreters, a last garbage collection) costs
    ~40 ms of `kiosk check`'s 0.5 s (issue 16; docs/performance.md) for memory the OS takes
    back anyway. So, with the main thread alone, the exit handlers run (logging's flush,
    temporary folders' clean-up), the streams are flushed and the process leaves without that
    teardown. With another thread alive, or a stream that cannot be flushed (a closed pipe),
    the exit is the usual one, which waits for the thread and reports the stream as before."""
    code = main()
    if threading.active_count() == 1:
        atexit._run_exitfuncs()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            sys.exit(code)
        os._exit(code)
    sys.exit(code)
