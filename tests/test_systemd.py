"""systemd units, the Raspberry Pi install script and config.txt fragment, checked off-device.

`systemd-analyze verify` runs where it exists (ExecStart's /opt/kiosk path is swapped for
/bin/true, since the venv only exists on a kiosk); the directives the deployment relies on are
checked by parsing the files, so the test means something on machines without systemd too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from kiosk.config import load_config

REPO = Path(__file__).resolve().parent.parent
SERVICE = REPO / "systemd" / "kiosk.service"
CONSOLE = REPO / "systemd" / "kiosk-console.service"
INSTALL = REPO / "firmware_config" / "install-rpi.sh"
FRAGMENT = REPO / "firmware_config" / "rpi-config.txt"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values (keys like Environment= may repeat); joins `\\` continuations."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section, pending = "", ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        sections[section][key.strip()].append(value.strip())
    return sections


def test_kiosk_service_directives():
    unit = parse_unit(SERVICE)
    service = {key: values[-1] for key, values in unit["Service"].items()}
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "User": "kiosk",
        "SupplementaryGroups": "video",
        "StateDirectory": "kiosk",
        "ConfigurationDirectory": "kiosk",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert 10 <= int(service["WatchdogSec"]) <= 120
    families = service["RestrictAddressFamilies"].split()
    assert {"AF_UNIX", "AF_INET"} <= set(families)  # sd_notify/journald and the console
    assert service["ExecStart"] == "/opt/kiosk/venv/bin/kiosk --config ${KIOSK_CONFIG} run"
    assert "KIOSK_CONFIG=/etc/kiosk/kiosk.toml" in unit["Service"]["Environment"]
    assert "PrivateDevices" not in service  # the camera's /dev nodes must stay visible
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_console_unit_opens_chromium_in_kiosk_mode():
    unit = parse_unit(CONSOLE)
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert "KIOSK_URL=http://127.0.0.1:8080" in unit["Service"]["Environment"]
    assert "--kiosk" in service["ExecStart"] and '--app="$KIOSK_URL"' in service["ExecStart"]
    assert "/health" in service["ExecStartPre"]  # waits for kiosk.service's console
    assert service["Restart"] == "always"
    assert unit["Install"]["WantedBy"] == ["graphical-session.target"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize(("unit", "user"), [(SERVICE, False), (CONSOLE, True)])
def test_systemd_analyze_verify_is_clean(unit, user, tmp_path):
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/kiosk/venv/bin/kiosk", "/bin/true"))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    command = ["systemd-analyze", *(["--user"] if user else []), "verify", str(copy)]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and bad values too; they show up as warnings.
    assert result.stderr.strip() == "" and result.stdout.strip() == ""


def test_install_script_syntax_and_helpers(tmp_path):
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)
    config = tmp_path / "kiosk.toml"
    shutil.copy(REPO / "firmware_config" / "kiosk.toml", config)
    config_txt = tmp_path / "config.txt"
    config_txt.write_text("[pi4]\narm_boost=1\n")
    script = f"""
        source {INSTALL}
        pi_config {config}
        install_firmware_config {config_txt}
        install_firmware_config {config_txt}
    """
    subprocess.run(["bash", "-c", script], check=True, capture_output=True)
    pi = load_config(config)
    assert pi.models.dir == "/var/lib/kiosk/models/current"
    assert pi.service.source == "picamera"
    assert (pi.store.dir, pi.store.key_file) == (
        "/var/lib/kiosk/captures",
        "/var/lib/kiosk/capture.key",
    )
    text = config_txt.read_text()
    assert text.count("# BEGIN idkiosk") == 1 and text.count("# END idkiosk") == 1  # idempotent
    assert text.startswith("[pi4]\narm_boost=1\n")
    assert (tmp_path / "config.txt.before-idkiosk").read_text() == "[pi4]\narm_boost=1\n"


def test_firmware_fragment_enables_the_camera_for_all_models():
    lines = [line for line in FRAGMENT.read_text().splitlines() if line and line[0] != "#"]
    assert lines[0] == "[all]"  # not captured by a conditional section above it
    assert "camera_auto_detect=1" in lines
