"""Model registry: `models/manifest.json` is the contract between training and the kiosk.

Every model file is read once, hashed, and compared with the manifest before an interpreter is
built from those very bytes, so a file swapped after the check can never be the one that runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.errors import ModelError
from kiosk.litert import make_interpreter

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ModelEntry:
    """One manifest entry; `extra` keeps every other documented field (metrics, provenance...)."""

    name: str
    file: str
    sha256: str
    input_shape: tuple[int, ...]
    quantization: str
    threshold: float | None
    extra: dict[str, Any]


class ModelRegistry:
    """Reads the manifest of a models directory and hands out verified interpreters."""

    def __init__(self, models_dir: Path | str) -> None:
        self.models_dir = Path(models_dir)
        manifest_path = self.models_dir / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text())
            models = manifest["models"]
        except FileNotFoundError as exc:
            raise ModelError(
                f"no model manifest at {manifest_path}: run `make models` or point "
                "[models] dir in the config at a deployed bundle"
            ) from exc
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelError(f"model manifest {manifest_path} is unreadable: {exc}") from exc
        self.entries = {name: _entry(name, fields) for name, fields in models.items()}

    def entry(self, name: str) -> ModelEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ModelError(
                f"model {name!r} is not in {self.models_dir / MANIFEST}; "
                f"known: {', '.join(sorted(self.entries)) or 'none'}"
            ) from None

    def verified_bytes(self, name: str) -> bytes:
        """The model file's bytes after checking them against the manifest's sha256."""
        entry = self.entry(name)
        path = self.models_dir / entry.file
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ModelError(
                f"model file {path} for {name!r} is missing or unreadable ({exc.strerror}); "
                "redeploy the model bundle"
            ) from exc
        digest = hashlib.sha256(content).hexdigest()
        if digest != entry.sha256:
            raise ModelError(
                f"model file {path} for {name!r} does not match the manifest "
                f"(sha256 {digest[:12]}..., expected {entry.sha256[:12]}...): it was altered or "
                "belongs to another bundle; redeploy the model bundle"
            )
        return content

    def interpreter(self, name: str, num_threads: int = 1) -> Any:
        """A TFLite interpreter for a verified model (tensors not yet allocated)."""
        return make_interpreter(self.verified_bytes(name), num_threads=num_threads)


def _entry(name: str, fields: dict[str, Any]) -> ModelEntry:
    try:
        known = {"file", "sha256", "input_shape", "quantization", "threshold"}
        return ModelEntry(
            name=name,
            file=str(fields["file"]),
            sha256=str(fields["sha256"]),
            input_shape=tuple(int(v) for v in fields.get("input_shape", ())),
            quantization=str(fields.get("quantization", "unknown")),
            threshold=None if fields.get("threshold") is None else float(fields["threshold"]),
            extra={k: v for k, v in fields.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"manifest entry {name!r} is malformed: {exc}") from exc
