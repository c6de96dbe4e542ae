"""`kiosk run` as systemd runs it: a process with NOTIFY_SOCKET, SIGHUP reloads, SIGTERM stops."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from kiosk.cli import main
from kiosk.config import load_config, parse_config
from kiosk.contract.errors import ConfigError
from tests.conftest import REPO
from tests.test_service_loop import notify_socket, wait_for


def test_refuses_a_network_binding_without_token(tmp_path, capsys):
    config = tmp_path / "kiosk.toml"
    config.write_text('[console]\nhost = "0.0.0.0"\n')
    assert main(["--config", str(config), "run"]) == 2
    assert "set console.token" in capsys.readouterr().err


def test_refuses_a_port_in_use(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["run", "--port", str(port)]) == 2
    assert "is another kiosk service running?" in capsys.readouterr().err


def test_kiosk_run_process_notifies_reloads_and_stops(tmp_path):
    (tmp_path / "empty").mkdir()  # a replay folder without photos: the camera is unavailable
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'[service]\nsource = "{tmp_path / "empty"}"\nretry_min_s = 0.1\n'
        f'[store]\ndir = "{tmp_path / "store"}"\nkey_file = "{tmp_path / "key"}"\n'
        "[console]\nport = 0\n"
        f'[models]\ndir = "{REPO / "models"}"\n'  # (relative paths follow the config file)
    )
    sock, path = notify_socket(tmp_path)
    sock.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "-v", "--config", str(config), "run"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sock.recv(4096).decode().startswith("READY=1")
        line = ""
        while "console on" not in line:
            line = process.stderr.readline()
            assert line, "kiosk run exited before serving"
        url = re.search(r"http://\S+?/", line).group(0)
        health = httpx.get(url + "health", timeout=5)
        assert health.status_code == 200  # models fine; the replay has no photo: degraded
        body = health.json()
        assert body["status"] == "degraded" and body["models"] and body["bundle"] == "models"
        assert body["camera"]["ok"] is False
        process.send_signal(signal.SIGHUP)
        lines = []
        wait_for(
            lambda: lines.append(process.stderr.readline()) or "models loaded" in lines[-1], 30
        )
        assert httpx.get(url + "health", timeout=5).status_code == 200
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - start < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        sock.close()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"service": {"smoothing_frames": 0}}, r"service.smoothing_frames = 0 is outside"),
        ({"service": {"retry_max_s": 0}}, r"service.retry_max_s = 0.0 is outside"),
        ({"service": {"replay_loop": "yes"}}, "service.replay_loop = 'yes' must be a bool"),
        ({"service": {"sorce": "camera:0"}}, "unknown key service.sorce"),
        ({"console": {"port": 70000}}, r"console.port = 70000 is outside"),
        ({"console": {"max_body_bytes": 10}}, r"console.max_body_bytes = 10 is outside"),
    ],
)
def test_service_and_console_settings_are_validated(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_shipped_config_binds_the_console_to_loopback_without_token():
    config = load_config()
    assert (config.console.host, config.console.token) == ("127.0.0.1", "")
    assert config.service.smoothing_frames >= 1 and config.service.ready_frames >= 1
