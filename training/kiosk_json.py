"""The kiosk's own commands as training reports and the benches run them: one `kiosk check` or
`kiosk forensics` process over a folder, one JSON record per picture (what other tools parse)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from kiosk.config import PROJECT_CONFIG
from training.paths import REPO

MODELS_DIR = 'dir = "../models"'  # the project config's bundle, relative to its folder


def kiosk_records(command: str, folder: Path, models: Path | None = None) -> list[dict]:
    """The records of `kiosk <command> --json` on `folder`, in the order it read the pictures.
    `models`: another model bundle, named by a copy of the project's config in a temporary
    folder (never beside `folder`, which may be a shared dataset) that differs from it only in
    `[models] dir`, so both bundles run with the same settings. Exit codes 0-2 are answers
    (nothing flagged, something flagged, an image errored); another code, or no record at all
    (a crash, a usage error), raises."""
    with tempfile.TemporaryDirectory() as tmp:
        config = []
        if models is not None:
            path = Path(tmp) / "kiosk.toml"
            path.write_text(bundle_config(models))
            config = ["--config", str(path)]
        run = subprocess.run(
            [sys.executable, "-m", "kiosk", *config, command, "--json", str(folder)],
            capture_output=True, text=True, cwd=REPO, check=False,
        )  # fmt: skip
    lines = (json.loads(line) for line in run.stdout.splitlines() if line.startswith("{"))
    records = [record for record in lines if "source" in record]  # not the closing summary
    if run.returncode not in (0, 1, 2) or not records:  # a picture that errs still has one
        raise RuntimeError(
            f"kiosk {command} failed on {folder} (exit {run.returncode}): {run.stderr[-2000:]}"
        )
    return records


def bundle_config(models: Path) -> str:
    """The project config's text with `models` as its bundle and its other relative paths made
    absolute (the copy lives elsewhere)."""
    text = PROJECT_CONFIG.read_text()
    if text.count(MODELS_DIR) != 1:
        raise RuntimeError(f"{PROJECT_CONFIG}: expected one line {MODELS_DIR!r}")
    text = text.replace(MODELS_DIR, f'dir = "{models.resolve()}"')
    return text.replace('"../', f'"{PROJECT_CONFIG.parent.resolve()}/../')
