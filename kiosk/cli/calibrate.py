"""`kiosk calibrate [SOURCE] --frames N --false-alarms RATE`: this camera's JPEG-history threshold.

Takes N stills from the kiosk's camera (default: `[service] source`), scores each like a capture
and stores the threshold that flags at most RATE of them in `[forensics] jpeg_calibration`,
which the JPEG-history check then uses. Point the camera at varied scenes (people, walls,
printed pages, dark and bright) while it runs: consecutive frames of one scene are not
independent. A USB camera that delivers MJPEG, or a folder of JPEG files, is refused: every
frame has a JPEG history there, so the check is not meaningful.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

import cv2

from kiosk.config import load_config
from kiosk.contract.errors import InputError
from kiosk.runtime.cameras.base import CameraUnavailable
from kiosk.runtime.cameras.live import make_camera
from kiosk.runtime.cameras.spec import PATH, USB, parse_spec
from kiosk.runtime.forensics.calibration import new_calibration
from kiosk.runtime.forensics.jpeg import MODEL_NAME, JpegHistoryCheck, pool, to_gray
from kiosk.runtime.models.registry import ModelRegistry

log = logging.getLogger(__name__)

NOT_MEANINGFUL = "JPEG check not meaningful"
JPEG_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".mjpg", ".mjpeg"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "calibrate", help="measure this camera's JPEG-history scores and store its threshold"
    )
    parser.add_argument(
        "source",
        nargs="?",
        help="camera, camera:N, picamera or a folder of lossless frames "
        "(default: [service] source)",
    )
    parser.add_argument("--frames", type=int, default=300, help="stills to score (default 300)")
    parser.add_argument(
        "--false-alarms", type=float, default=0.01, help="allowed share of flagged frames"
    )
    parser.add_argument("--json", action="store_true", help="print the stored calibration as JSON")
    parser.set_defaults(func=cmd_calibrate)


def usb_fourcc(index: int) -> str:
    """The pixel format a USB camera delivers through OpenCV (e.g. MJPG, YUYV)."""
    capture = cv2.VideoCapture(index)
    try:
        code = int(capture.get(cv2.CAP_PROP_FOURCC)) if capture.isOpened() else 0
    finally:
        capture.release()
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ")


def refuse_jpeg_sources(spec: str) -> None:
    """InputError when the source's frames are JPEGs anyway (MJPEG USB camera, JPEG files)."""
    parsed = parse_spec(spec)
    if parsed.kind == USB and usb_fourcc(parsed.index).upper() == "MJPG":
        raise InputError(
            f"{NOT_MEANINGFUL}: {spec} delivers MJPEG, so every frame is a JPEG; switch it to "
            "an uncompressed format (YUYV) or leave jpeg_history out of the manifest"
        )
    if parsed.kind == PATH:
        files = [parsed.path] if parsed.path.is_file() else list(parsed.path.glob("*"))
        if any(path.suffix.lower() in JPEG_SUFFIXES for path in files):
            raise InputError(
                f"{NOT_MEANINGFUL}: {spec} holds JPEG files; calibrate on lossless frames "
                "(PNG) saved from the camera's raw stream"
            )


def cmd_calibrate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not 0 < args.false_alarms < 0.5:
        raise InputError("--false-alarms must lie between 0 and 0.5, e.g. 0.01")
    spec = args.source or config.service.source
    refuse_jpeg_sources(spec)
    registry = ModelRegistry(config.models_dir, config.models.public_key_path)
    entry = registry.entry(MODEL_NAME)
    check = JpegHistoryCheck(
        registry.verified_bytes(MODEL_NAME),
        float(entry.threshold or 0.5),
        config.models.num_threads,
    )
    camera = make_camera(spec, config.service.preview_width, replay_fps=0.0, replay_loop=False)
    scores: list[float] = []
    camera.open()
    try:
        while len(scores) < args.frames:
            try:
                camera.preview()
                still = camera.capture_still()
            except CameraUnavailable as exc:
                if scores:
                    log.warning("camera stopped after %d frames: %s", len(scores), exc)
                    break
                raise
            scores.append(pool(check.patch_scores(to_gray(still.image))))
    finally:
        camera.close()
    calibration = new_calibration(spec, entry.sha256, scores, args.false_alarms)
    path = config.forensics.jpeg_calibration
    calibration.save(Path(path))
    if args.json:
        print(json.dumps({**asdict(calibration), "file": str(path)}))
    else:
        print(
            f"{spec}: {calibration.frames} frames, highest score {calibration.max_score:.4f}; "
            f"threshold {calibration.threshold:.4f} at {args.false_alarms:.1%} false alarms "
            f"(manifest: {entry.threshold}); stored in {path}"
        )
    return 0
