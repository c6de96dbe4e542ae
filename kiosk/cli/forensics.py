"""`kiosk forensics PATH... [--json] [--out DIR]`: the forensic pass over image files."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kiosk.config import load_config
from kiosk.contract.errors import KioskError
from kiosk.runtime.cameras.sources import Frame, open_path
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.suite import ForensicSuite
from kiosk.runtime.imageio import Limits, load_luma
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.mtcnn_lite import MtcnnLite


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("forensics", help="JPEG history, tamper and super-resolution checks")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="write heat maps and super-resolved faces here"
    )
    parser.add_argument(
        "--models",
        type=Path,
        metavar="DIR",
        help="model bundle to use instead of the config's [models] dir (every other setting "
        "kept: try a bundle before deploying it)",
    )
    parser.set_defaults(func=cmd_forensics)


def cmd_forensics(args: argparse.Namespace) -> int:
    """Exit 0 nothing flagged, 1 something flagged, 2 some image errored or no check could run
    on it (or no image was found)."""
    config = load_config(args.config, args.models)
    try:
        registry = ModelRegistry(config.models_dir, config.models.public_key_path)
        suite = ForensicSuite.from_config(config, registry)
        # Only the face box is needed (SR): the detector alone, not the 100 MB landmark model.
        detector = (
            MtcnnLite(registry, config.detector, num_threads=config.models.num_threads)
            if suite.needs_face
            else None
        )
    except KioskError as exc:
        print(f"kiosk: cannot start the forensic checks: {exc}", file=sys.stderr)
        return 2
    if not suite.checks:
        print("kiosk: no forensic model is listed in the manifest", file=sys.stderr)
        return 2
    flagged = errors = images = 0
    limits = Limits.from_config(config.input)
    work_pixels = int(config.input.work_megapixels * 1e6)
    for spec in args.paths:
        source = open_path(Path(spec), limits=limits, work_pixels=work_pixels)
        try:
            for frame in source.frames():
                record = _examine(suite, detector, frame, args.out, limits)
                images += 1
                checks = [v for v in record.values() if isinstance(v, dict)]
                # SR that was not applied (no small face) checked nothing either.
                ran = any("error" not in v and v.get("applied", True) for v in checks)
                errors += record["error"] is not None or not ran
                flagged += any(v.get("flagged") for v in checks)
                print(json.dumps(record) if args.json else _human_line(record), flush=True)
        finally:
            source.close()
    if not images:
        print("kiosk: no image found in " + ", ".join(args.paths), file=sys.stderr)
        return 2
    return 2 if errors else (1 if flagged else 0)


DETECT_PIXELS = 640 * 480  # the SR check needs only the face box: find it on a VGA-sized copy


def _face_box(detector: MtcnnLite, image: np.ndarray) -> tuple[float, float, float, float] | None:
    """The one face's box in `image` pixels, found on a copy of at most DETECT_PIXELS: the MTCNN
    pyramid's interpreters and buffers grow with the frame (on a 1.3 MP working copy they cost
    ~90 MB more than at VGA)."""
    height, width = image.shape[:2]
    scale = min(1.0, (DETECT_PIXELS / (height * width)) ** 0.5)
    small = image
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    faces = detector.detect(small)
    if len(faces) != 1:
        return None
    x0, y0, x1, y1 = faces[0].box
    return (x0 / scale, y0 / scale, x1 / scale, y1 / scale)


def _examine(
    suite: ForensicSuite,
    detector: MtcnnLite | None,
    frame: Frame,
    out: Path | None,
    limits: Limits,
) -> dict[str, Any]:
    """One record. The checks see the working copy; JPEG history the file's full-res luma."""
    record: dict[str, Any] = {"source": frame.source}
    if frame.image is None:
        return {**record, "error": frame.error or "unreadable image"}
    face = _face_box(detector, frame.image) if detector is not None else None
    luma = None
    if frame.path is not None and frame.scale != 1.0:
        luma = partial(load_luma, frame.path, limits)  # decoded by the JPEG check, then freed
    stem = Path(frame.source).stem + (f"_{frame.index:05d}" if frame.index else "")
    capture = Capture(frame.image, face, scale=frame.scale, luma=luma)
    try:
        record.update(suite.run(capture, Artifacts(out, stem)))
    except KioskError as exc:
        return {**record, "error": str(exc)}
    return {**record, "scale": round(frame.scale, 4), "error": None}


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
