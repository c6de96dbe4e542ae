"""Build the versioned, signed bundle that the playbook copies to every kiosk.

A bundle is ``manifest.json``, the model files it lists, ``manifest.sig`` (Ed25519 over the
manifest, which holds every model's sha256), ``bundle.json`` (version, manifest hash, git
revision, build time) and ``SHA256SUMS`` over all of them, so the kiosk can check the bytes that
arrived with ``sha256sum`` before its own signature check.
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kiosk.contract.errors import KioskError
from kiosk.contract.manifest import (
    git_revision,
    load_manifest,
    sha256_file,
    sign_bundle,
    verify_files,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
BUNDLE_INFO = "bundle.json"


class DeployError(KioskError):
    """A bundle that cannot be built or signed, or a rollout that cannot start."""


@dataclass(frozen=True)
class Bundle:
    version: str
    path: Path
    models: dict[str, str]  # name -> sha256: what a healthy kiosk must report


def bundle_version(manifest_sha256: str, now: datetime) -> str:
    """``<UTC build time, ms>-<12 hex of the manifest hash>``: sorts in build order, names its manifest."""
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{manifest_sha256[:12]}"


def build_bundle(models_dir: Path, staging: Path, signing_key: Path) -> Bundle:
    """Copy the manifest and its files into ``staging/<version>``, check and sign them.

    The manifest is validated and every file checked against its sha256 here, so a bad models
    folder is refused before any kiosk sees it. Raises DeployError with what to fix.
    """
    try:
        manifest = load_manifest(models_dir)
        verify_files(models_dir, manifest)
    except KioskError as exc:
        raise DeployError(f"models folder {models_dir} cannot be shipped: {exc}") from None
    if not signing_key.is_file():
        raise DeployError(
            f"signing key {signing_key} not found: set DEPLOY_SIGNING_KEY to the private key "
            "made by `python -m kiosk bundle keygen --out PREFIX` (PREFIX.key)"
        )
    now = datetime.now(UTC)
    version = bundle_version(manifest.sha256, now)
    bundle = staging / version
    bundle.mkdir(parents=True)
    files = [MANIFEST, *sorted(entry.file for entry in manifest.models.values())]
    for name in files:
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(models_dir / name, bundle / name)
    try:
        sign_bundle(bundle, signing_key)
    except (KioskError, OSError, ValueError) as exc:
        raise DeployError(f"cannot sign the bundle with {signing_key}: {exc}") from None
    info = {
        "version": version,
        "manifest_sha256": manifest.sha256,
        "git_revision": git_revision(models_dir),
        "built": now.isoformat(timespec="seconds"),
    }
    (bundle / BUNDLE_INFO).write_text(json.dumps(info, indent=1) + "\n")
    listed = sorted(
        path.relative_to(bundle).as_posix() for path in bundle.rglob("*") if path.is_file()
    )
    sums = "".join(f"{sha256_file(bundle / name)}  {name}\n" for name in listed)
    (bundle / SUMS).write_text(sums)
    log.info("bundle %s: %d models, signed", version, len(manifest.models))
    return Bundle(version, bundle, {name: entry.sha256 for name, entry in manifest.models.items()})


def pack(bundle: Bundle) -> Path:
    """A tar of the bundle's files (next to its folder), owned by nobody in particular.

    The playbook ships it with one transfer and unpacks it on the kiosk, where SHA256SUMS and the
    signature are checked after unpacking, so a damaged archive cannot slip through.
    """
    archive = bundle.path.with_name(f"{bundle.version}.tar")

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(archive, "w") as tar:
        for path in sorted(bundle.path.rglob("*")):
            tar.add(
                path,
                arcname=path.relative_to(bundle.path).as_posix(),
                recursive=False,
                filter=anonymous,
            )
    return archive
