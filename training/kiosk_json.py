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
    `models`: another model bundle (`--models`: the project's config with only its
    `[models] dir` replaced, so both bundles run with the same settings). Exit codes 0-2 are
    answers (nothing flagged, something flagged, an image errored); another code, or no record
    at all (a crash, a usage error), raises."""
    bundle = [] if models is None else ["--models", str(models)]
    run = subprocess.run(
        [sys.executable, "-m", "kiosk", command, "--json", *bundle, str(folder)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    lines = (json.loads(line) for line in run.stdout.splitlines() if line.startswith("{"))
    records = [record for record in lines if "source" in record]  # not the closing summary
    if run.returncode not in (0, 1, 2) or not records:  # a picture that errs still has one
        raise RuntimeError(
            f"kiosk {command} failed on {folder} (exit {run.returncode}): {run.stderr[-2000:]}"
        )
    return records
