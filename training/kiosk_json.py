"""The kiosk's own commands as training reports and the benches run them: one `kiosk check` or
`kiosk forensics` process over a folder, one JSON record per picture (what other tools parse)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from training.paths import REPO


def kiosk_records(command: str, folder: Path, models: Path | None = None) -> list[dict]:
    """The records of `kiosk <command> --json` on `folder`, in the order it read the pictures.
    `models`: another model bundle, named by a config file written beside `folder`. Exit codes
    0-2 are answers (nothing flagged, something flagged, an image errored); any other raises."""
    config = []
    if models is not None:
        path = folder.parent / f"{folder.name}_kiosk.toml"
        path.write_text(f'[models]\ndir = "{models.resolve()}"\n')
        config = ["--config", str(path)]
    run = subprocess.run(
        [sys.executable, "-m", "kiosk", *config, command, "--json", str(folder)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    if run.returncode not in (0, 1, 2):
        raise RuntimeError(f"kiosk {command} failed on {folder}: {run.stderr[-2000:]}")
    records = (json.loads(line) for line in run.stdout.splitlines() if line.startswith("{"))
    return [record for record in records if "source" in record]  # not the closing summary
