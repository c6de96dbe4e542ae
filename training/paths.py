"""Where training reads data and writes artefacts. Override the data root with --data-root or
IDKIOSK_DATA_ROOT so users can train on their own data."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def configured_data_root(override: str | Path | None = None) -> Path:
    """The one data-root setting: `override` (--data-root), else IDKIOSK_DATA_ROOT, else the
    shared datasets beside the checkout. Not checked (tests skip when it is missing)."""
    return Path(
        override or os.environ.get("IDKIOSK_DATA_ROOT") or REPO.parent / "shared" / "datasets"
    )


def data_root(override: str | Path | None = None) -> Path:
    """`configured_data_root`, which must exist."""
    root = configured_data_root(override)
    if not root.is_dir():
        raise SystemExit(
            f"data root {root} does not exist: pass --data-root or set IDKIOSK_DATA_ROOT"
        )
    return root


WORK = Path(os.environ.get("IDKIOSK_WORK_DIR", REPO / "data"))  # crops, checkpoints (git-ignored)
MODELS = REPO / "models"
REPORTS = REPO / "reports"
