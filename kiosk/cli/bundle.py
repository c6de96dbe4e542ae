"""`kiosk bundle keygen|sign|verify`: sign model bundles on the engineer's machine, check them
on the kiosk before they go live (docs/model_bundles.md).

Exit codes: 0 done / bundle valid, 2 refused (the reason on stderr, via kiosk.cli).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kiosk.config import load_config
from kiosk.contract.manifest import (
    ManifestError,
    generate_key,
    load_manifest,
    sign_bundle,
    verify_files,
    verify_signature,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `bundle` and its subcommands to the kiosk command line."""
    bundle = sub.add_parser(
        "bundle",
        help="sign and verify model bundles (Ed25519 over manifest.json)",
        description="A bundle is a folder with manifest.json and the model files it lists. "
        "`sign` validates it and writes manifest.sig; `verify` checks the manifest schema, "
        "the signature and every file's size and sha256.",
    )
    actions = bundle.add_subparsers(dest="bundle_command", required=True)

    keygen = actions.add_parser("keygen", help="create the office's signing key pair")
    keygen.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="PREFIX",
        help="writes PREFIX.key (private, mode 0600: keep it off kiosks and out of git) and "
        "PREFIX.pub (install it on every kiosk)",
    )
    keygen.set_defaults(func=_keygen)

    sign = actions.add_parser("sign", help="validate a bundle and write its manifest.sig")
    sign.add_argument("dir", type=Path, metavar="DIR")
    sign.add_argument("--key", type=Path, required=True, metavar="PREFIX.key")
    sign.set_defaults(func=_sign)

    verify = actions.add_parser("verify", help="check a bundle: schema, signature, files")
    verify.add_argument("dir", type=Path, metavar="DIR")
    key = verify.add_mutually_exclusive_group()
    key.add_argument(
        "--public-key",
        type=Path,
        metavar="FILE",
        help="the signing key's .pub (default: [models] public_key of the config)",
    )
    key.add_argument(
        "--no-signature",
        action="store_true",
        help="check the manifest and files only (a developer checkout is not signed)",
    )
    verify.set_defaults(func=_verify)


def _keygen(args: argparse.Namespace) -> int:
    private, public = generate_key(args.out)
    print(f"wrote {private} (private: keep it secret) and {public} (install it on the kiosks)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    path = sign_bundle(args.dir, args.key)
    print(f"signed {args.dir}: {path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    public_key = None
    if not args.no_signature:
        public_key = args.public_key or load_config(args.config).models.public_key_path
        if public_key is None:
            raise ManifestError(
                "no public key to verify the signature with: pass --public-key FILE, set "
                "[models] public_key in the config, or --no-signature to check files only"
            )
    manifest = load_manifest(args.dir)
    signer = verify_signature(args.dir, public_key, manifest) if public_key else None
    verify_files(args.dir, manifest)
    signed = f"signed by key {signer[:16]}" if signer else "signature not checked"
    print(
        f"bundle {args.dir} ok: {len(manifest.models)} models, manifest sha256 "
        f"{manifest.sha256[:12]}, {signed}"
    )
    return 0
