#!/usr/bin/env bash
# Create .venv at the project root with everything to run, train and test idkiosk.
# On a Raspberry Pi use firmware_config's install script instead (system picamera2, no training).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "idkiosk needs Python >= 3.11" >&2; exit 1; }
# Debian's chromium for the console's end-to-end test (Playwright cannot download a browser here).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ] || ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; }; then
    echo "warning: could not install Debian's chromium; the console end-to-end test needs it" >&2
  fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[train,dev]'
.venv/bin/python -c 'import kiosk.runtime.models.litert as l; l._interpreter_class(); print("idkiosk environment ready in .venv")'
