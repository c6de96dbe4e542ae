"""The kiosk's own commands as training reports and the benches run them: one `kiosk check` or
`kiosk forensics` process over a folder, one JSON record per picture (what other tools parse)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from training.paths import REPO


def kiosk_records(command: str, folder: Path, models: Path | None = None) -> list[dict]:
    """The records of `kiosk <command> --json` on `folder`, in the order it read the pictures.
    `models`: another model bundle, named by a config file in a temporary folder (never beside
    `folder`, which may be a shared dataset). Exit codes 0-2 are answers (nothing flagged,
    something flagged, an image errored); another code, or no record at all (a crash, a usage
    error), raises."""
    with tempfile.TemporaryDirectory() as tmp:
        config = []
        if models is not None:
            path = Path(tmp) / "kiosk.toml"
            path.write_text(f'[models]\ndir = "{models.resolve()}"\n')
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
