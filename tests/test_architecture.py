"""The layers import one way (docs/architecture.md): import-linter's contracts in pyproject.toml."""

import shutil
import subprocess

from tests.conftest import REPO


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(REPO / ".venv" / "bin")) or shutil.which(
        "lint-imports"
    )
    assert lint, "lint-imports (import-linter) is not installed: run scripts/setup.sh"
    result = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
