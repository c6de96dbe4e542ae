"""`kiosk vsi` and `kiosk diag {keygen,export,decrypt}`.

``register(subparsers)`` adds the commands to the kiosk's argparse tree; each sets ``func``
(args -> exit code). Exit codes: 0 done; 1 (export) some frame refused by the VSI gate;
2 bad input (one-line message on stderr, never a traceback).
Images are read with the kiosk's own decoder (every frame becomes RGB uint8).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from kiosk.contract.errors import KioskError
from kiosk.runtime.imageio import load_rgb
from kiosk.runtime.privacy.diag import DiagDefaults, decrypt_package, export_package
from kiosk.runtime.privacy.edges import EDGE_FILTERS
from kiosk.runtime.privacy.encryption import SCHEMES, STRENGTHS, read_key, write_key
from kiosk.runtime.privacy.vsi import MIN_SIDE, VsiParams, visual_security_index

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
_MAX_VSI_SIDE = 1024  # keeps `kiosk vsi` under ~500 MB whatever the frame size


def _guarded(
    name: str, command: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """Turn expected failures into one stderr line and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ValueError, KioskError) as error:
            print(f"kiosk {name}: error: {error}", file=sys.stderr)
            return 2
        except OSError as error:
            print(f"kiosk {name}: error: {error.strerror or error}", file=sys.stderr)
            return 2

    return run


def _vsi(args: argparse.Namespace) -> int:
    params = VsiParams(
        alpha=args.alpha,
        beta=args.beta,
        gamma=args.gamma,
        edge_filter=args.edge_filter,
        size=args.size,
    )
    result = visual_security_index(load_rgb(args.plain), load_rgb(args.encrypted), params)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(
            f"VSI {result.vsi:.4f} (RD {result.rd:.4f}, GS {result.gs:.4f}; higher = less secure)"
        )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    write_key(args.key_file)
    print(f"wrote a new 32-byte key to {args.key_file} (mode 0600); keep a copy off the kiosk")
    return 0


def _frame_paths(inputs: list[Path]) -> list[Path]:
    paths = []
    for item in inputs:
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        else:
            paths.append(item)
    if not paths:
        raise ValueError("no image files found in the given paths")
    return paths


def _export(args: argparse.Namespace) -> int:
    defaults = DiagDefaults()
    defaults = replace(
        defaults,
        scheme=args.scheme or defaults.scheme,
        strength=args.strength or defaults.strength,
        vsi_threshold=defaults.vsi_threshold if args.threshold is None else args.threshold,
    )
    key = read_key(args.key)
    paths = _frame_paths(args.frames)
    summary = export_package(map(load_rgb, paths), key, args.out, defaults)
    for path, verdict in zip(paths, summary.verdicts, strict=True):
        state = "exported" if verdict.exported else "REFUSED (recognizable)"
        print(f"{path}: VSI {verdict.vsi:.3f} <= {defaults.vsi_threshold:.3f}? {state}")
    if summary.path is None:
        print("no frame passed the VSI gate; nothing written", file=sys.stderr)
        return 1
    print(f"{summary.exported} of {len(paths)} frame(s) written to {summary.path}")
    return 0 if summary.exported == len(paths) else 1


def _decrypt(args: argparse.Namespace) -> int:
    written = decrypt_package(args.package, read_key(args.key), args.out)
    print(f"restored {len(written)} frame(s) into {args.out}")
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _side(text: str) -> int:
    value = int(text)
    if not MIN_SIDE <= value <= _MAX_VSI_SIDE:
        raise argparse.ArgumentTypeError(f"must be in [{MIN_SIDE}, {_MAX_VSI_SIDE}], got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `vsi` and `diag` to the kiosk command line."""
    defaults = VsiParams()
    vsi = subparsers.add_parser(
        "vsi",
        help="visual security index of an encrypted image (higher = less secure)",
        description="Print the visual security index of ENCRYPTED against PLAIN.",
    )
    vsi.add_argument("plain", type=Path, help="the original frame")
    vsi.add_argument("encrypted", type=Path, help="its perceptually encrypted version")
    vsi.add_argument("--json", action="store_true", help='print {"vsi": .., "rd": .., "gs": ..}')
    vsi.add_argument("--alpha", type=_positive, default=defaults.alpha, help="block size ratio")
    vsi.add_argument("--beta", type=_positive, default=defaults.beta, help="low-pass bandwidth")
    vsi.add_argument("--gamma", type=_positive, default=defaults.gamma, help="Minkowski exponent")
    vsi.add_argument("--edge-filter", choices=EDGE_FILTERS, default=defaults.edge_filter)
    vsi.add_argument(
        "--size",
        type=_side,
        default=defaults.size,
        help=f"shorter side (px) both frames are downscaled to first (default {defaults.size}, "
        "the size the export gate is calibrated at; bounds memory on large frames)",
    )
    vsi.set_defaults(func=_guarded("vsi", _vsi))

    diag = subparsers.add_parser(
        "diag",
        help="privacy-safe diagnostic frames (encrypted, VSI-gated)",
        description="Export perceptually encrypted frames for engineers, and decrypt them.",
    )
    commands = diag.add_subparsers(dest="diag_command", required=True, metavar="COMMAND")

    keygen = commands.add_parser("keygen", help="create a new key file (mode 0600)")
    keygen.add_argument("key_file", type=Path)
    keygen.set_defaults(func=_guarded("diag keygen", _keygen))

    export = commands.add_parser(
        "export",
        help="encrypt frames and package those whose VSI passes the gate",
        description="Frames whose encryption still looks recognizable (VSI above the threshold) "
        "are refused; exit code 1 if any frame was refused.",
    )
    export.add_argument("frames", type=Path, nargs="+", help="image files or directories")
    export.add_argument("--key", type=Path, required=True, help="key file (see diag keygen)")
    export.add_argument("--out", type=Path, required=True, help="package to write (.zip)")
    export.add_argument(
        "--scheme",
        choices=list(SCHEMES),
        help="default: xor; only the options the calibrated gate offers are accepted",
    )
    export.add_argument("--strength", type=int, choices=STRENGTHS, help="default: 5")
    export.add_argument(
        "--threshold",
        type=_positive,
        help="a stricter (lower) VSI gate than the calibrated one (kiosk/runtime/privacy/gate.json)",
    )
    export.set_defaults(func=_guarded("diag export", _export))

    restore = commands.add_parser("decrypt", help="restore the frames of a package with the key")
    restore.add_argument("package", type=Path)
    restore.add_argument("--key", type=Path, required=True)
    restore.add_argument("--out", type=Path, required=True, help="directory for frame_NNN.png")
    restore.set_defaults(func=_guarded("diag decrypt", _decrypt))
