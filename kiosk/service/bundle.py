"""The loaded model bundle the service checks with: loaded once, swapped whole by a reload."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kiosk.config import Config
from kiosk.runtime.forensics.sr import SrCheck
from kiosk.runtime.forensics.suite import ForensicSuite
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.pipeline import CompliancePipeline
from kiosk.runtime.token.photo import TokenCutter


@dataclass(frozen=True)
class Checks:
    """One loaded model bundle: the pipeline and forensic suite built from it, and its hashes."""

    pipeline: CompliancePipeline
    forensics: ForensicSuite
    models: dict[str, str]  # name -> sha256, as verified from the manifest
    bundle: str  # the resolved models directory's name (a deploy swaps a symlink to it)
    signature: str  # "verified" ([models] public_key set) or "unchecked"
    token: TokenCutter | None = None  # cuts the passport photo from a still (issue 13)


def load_checks(config: Config) -> Checks:
    """Verify and load every model of the configured bundle; raises KioskError (ModelError).

    The models directory is resolved once, so a deploy that swaps a `current` symlink mid-load
    cannot mix two bundles.
    """
    bundle_dir = config.models_dir.resolve()
    pinned = dataclasses.replace(
        config, models=dataclasses.replace(config.models, dir=str(bundle_dir))
    )
    registry = ModelRegistry(bundle_dir, config.models.public_key_path)
    pipeline = CompliancePipeline(pinned, registry)
    forensics = ForensicSuite.from_config(pinned, registry)
    models = {name: entry.sha256 for name, entry in sorted(registry.entries.items())}
    sr = next((check for check in forensics.checks if isinstance(check, SrCheck)), None)
    token = TokenCutter(pipeline.analyzer.landmarks, config.token, sr)
    return Checks(pipeline, forensics, models, bundle_dir.name, registry.signature, token)
