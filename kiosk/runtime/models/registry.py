"""Model registry: the kiosk's view of a bundle whose manifest (`kiosk.contract.manifest`) it trusts.

The manifest is read and validated once; with a public key configured its signature is checked
over those very bytes before any model is handed out, so an unsigned, re-signed or edited bundle
never loads. Every model file is read once, hashed, and compared with the manifest before an
interpreter is built from those very bytes, so a file swapped after the check can never run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from kiosk.contract.errors import ModelError
from kiosk.contract.manifest import (
    MANIFEST,
    ModelEntry,
    load_manifest,
    read_model,
    verify_signature,
    warn_unchecked,
)
from kiosk.runtime.models.litert import make_interpreter

__all__ = ["ModelEntry", "ModelRegistry"]

log = logging.getLogger(__name__)


class ModelRegistry:
    """Reads the manifest of a models directory and hands out verified interpreters.

    `signature` is "verified" when `public_key` was given and the bundle's signature holds
    (otherwise ModelError), "unchecked" when no key was given (a developer checkout).
    """

    def __init__(self, models_dir: Path | str, public_key: Path | str | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.manifest = load_manifest(self.models_dir)
        self.signature: Literal["verified", "unchecked"]
        if public_key:
            verify_signature(self.models_dir, Path(public_key), self.manifest)
            self.signature = "verified"
            log.info("model bundle %s: signature verified", self.models_dir)
        else:
            warn_unchecked(str(self.models_dir))
            self.signature = "unchecked"
        self.entries: dict[str, ModelEntry] = self.manifest.models

    def entry(self, name: str) -> ModelEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ModelError(
                f"model {name!r} is not in {self.models_dir / MANIFEST}; "
                f"known: {', '.join(sorted(self.entries)) or 'none'}"
            ) from None

    def verified_bytes(self, name: str) -> bytes:
        """The model file's bytes after checking them (inside the bundle, size, sha256)."""
        return read_model(self.models_dir, name, self.entry(name))

    def interpreter(self, name: str, num_threads: int = 1) -> Any:
        """A TFLite interpreter for a verified model (tensors not yet allocated)."""
        return make_interpreter(self.verified_bytes(name), num_threads=num_threads)
