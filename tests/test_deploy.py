"""Model deployment against a local "kiosk": bundle, verify, switch, health, rollback, pruning.

The kiosk is simulated by a directory (the bundle root) and a health server thread that acts
like the service after a restart: it loads whatever ``current`` points at and reports the
models that loaded (a file without the TFLite identifier fails to load -> ``degraded``).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kiosk.deploy import (
    Bundle,
    DeployError,
    Deployment,
    LocalTransport,
    Options,
    build_bundle,
    health_problem,
    main,
)

GOOD = b"\x1c\x00\x00\x00TFL3"  # flatbuffer offset + TFLite file identifier


def make_models(directory: Path, tag: str, veil_loads: bool = True) -> Path:
    """A models dir with two fake .tflite files and their manifest."""
    directory.mkdir(parents=True)
    models = {}
    for name in ("eyes_closed", "veil"):
        head = GOOD if veil_loads or name != "veil" else b"garbage!"
        content = head + f"{name}-{tag}".encode() * 50
        (directory / f"{name}.tflite").write_bytes(content)
        models[name] = {"file": f"{name}.tflite", "sha256": hashlib.sha256(content).hexdigest()}
    (directory / "manifest.json").write_text(json.dumps({"models": models}))
    return directory


class FakeKiosk(BaseHTTPRequestHandler):
    root: Path

    def do_GET(self) -> None:
        current = (self.root / "current").resolve()
        manifest = json.loads((current / "manifest.json").read_text())["models"]
        loaded = {}
        for name, entry in manifest.items():
            content = (current / entry["file"]).read_bytes()
            if content[4:8] == b"TFL3":
                loaded[name] = hashlib.sha256(content).hexdigest()
        status = "ok" if len(loaded) == len(manifest) else "degraded"
        body = json.dumps({"status": status, "models": loaded, "bundle": current.name}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def kiosk(tmp_path: Path) -> Iterator[tuple[Path, Options]]:
    root = tmp_path / "kiosk"
    handler = type("Handler", (FakeKiosk,), {"root": root})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fetch = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
    url = f"http://127.0.0.1:{server.server_address[1]}/health"
    options = Options(
        root=str(root),
        restart=f"echo restart >> {shlex.quote(str(tmp_path / 'restarts.log'))}",
        health=shlex.join([sys.executable, "-c", fetch, url]),
        health_timeout_s=0.5,
        health_interval_s=0.05,
        keep=2,
    )
    yield root, options
    server.shutdown()
    server.server_close()


def deploy(models: Path, tmp_path: Path, options: Options) -> Bundle:
    bundle = build_bundle(models, tmp_path / "staging")
    Deployment(LocalTransport(options.root), bundle, options).run()
    return bundle


def bundles(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "bundles").iterdir())


def current(root: Path) -> str:
    return (root / "current").readlink().as_posix()


def test_deploy_switches_verifies_and_keeps_the_newest(kiosk, tmp_path):
    root, options = kiosk
    first = deploy(make_models(tmp_path / "m1", "1"), tmp_path, options)
    assert current(root) == f"bundles/{first.version}"
    there = root / "current"
    assert {"manifest.json", "SHA256SUMS", "bundle.json", "veil.tflite"} <= {
        p.name for p in there.iterdir()
    }
    assert json.loads((there / "bundle.json").read_text())["version"] == first.version
    versions = [first.version]
    for tag in ("2", "3"):
        versions.append(deploy(make_models(tmp_path / f"m{tag}", tag), tmp_path, options).version)
    assert bundles(root) == versions[-2:]  # keep = 2
    assert current(root) == f"bundles/{versions[-1]}"
    assert (tmp_path / "restarts.log").read_text().count("restart") == 3


def test_unhealthy_bundle_is_rolled_back(kiosk, tmp_path):
    root, options = kiosk
    good = deploy(make_models(tmp_path / "good", "g"), tmp_path, options)
    bad_models = make_models(tmp_path / "bad", "b", veil_loads=False)
    with pytest.raises(DeployError, match=r"unhealthy \(status is 'degraded'\).*healthy again"):
        deploy(bad_models, tmp_path, options)
    assert current(root) == f"bundles/{good.version}"
    assert bundles(root) == [good.version]  # the failed bundle is gone
    # deploy, deploy (fails), restart after the rollback
    assert (tmp_path / "restarts.log").read_text().count("restart") == 3


def test_first_bundle_unhealthy_has_nothing_to_roll_back_to(kiosk, tmp_path):
    _, options = kiosk
    with pytest.raises(DeployError, match="no previous bundle"):
        deploy(make_models(tmp_path / "bad", "b", veil_loads=False), tmp_path, options)


def test_damaged_transfer_leaves_current_alone(kiosk, tmp_path):
    root, options = kiosk
    good = deploy(make_models(tmp_path / "good", "g"), tmp_path, options)

    class Damaging(LocalTransport):
        def push(self, local: Path, remote: str) -> None:
            super().push(local, remote)
            with (Path(remote) / "veil.tflite").open("ab") as handle:
                handle.write(b"flipped in transit")

    bundle = build_bundle(make_models(tmp_path / "new", "n"), tmp_path / "staging")
    with pytest.raises(DeployError, match=r"arrived damaged \(veil.tflite: FAILED\)"):
        Deployment(Damaging(options.root), bundle, options).run()
    assert current(root) == f"bundles/{good.version}"
    assert bundles(root) == [good.version]  # no half-installed or incoming folder left


def test_concurrent_deploy_is_refused(kiosk, tmp_path):
    root, options = kiosk
    (root / ".deploy-lock").mkdir(parents=True)
    with pytest.raises(DeployError, match="another deploy holds"):
        deploy(make_models(tmp_path / "m", "1"), tmp_path, options)
    assert not (root / "current").exists()
    (root / ".deploy-lock").rmdir()
    deploy(make_models(tmp_path / "m2", "2"), tmp_path, options)
    assert not (root / ".deploy-lock").exists()  # released after a deploy


def test_command_line_local_install_without_restart(tmp_path, capsys):
    root = tmp_path / "kiosk"
    models = make_models(tmp_path / "m", "1")
    assert main(["--transport", "local", "--models", str(models), "--no-restart", str(root)]) == 0
    assert "installed (not restarted) on 1 of 1" in capsys.readouterr().out
    assert (root / "current" / "veil.tflite").read_bytes()[4:8] == b"TFL3"
    assert main(["--transport", "local", "--models", str(tmp_path / "none"), str(root)]) == 2


def test_bundle_refuses_files_that_differ_from_the_manifest(tmp_path):
    models = make_models(tmp_path / "m", "1")
    (models / "veil.tflite").write_bytes(GOOD + b"changed after export")
    with pytest.raises(DeployError, match="does not match its manifest sha256"):
        build_bundle(models, tmp_path / "staging")


def test_health_report_must_match_the_bundle():
    bundle = Bundle("v2", Path("unused"), {"veil": "aa", "eyes_closed": "bb"})
    assert (
        health_problem({"status": "ok", "models": {"veil": "aa"}, "bundle": "v2"}, bundle) is None
    )
    assert "runs bundle" in health_problem({"status": "ok", "models": {}, "bundle": "v1"}, bundle)
    assert "lists no models" in health_problem({"status": "ok", "models": {}}, bundle)
    assert "not the bundle's" in health_problem({"status": "ok", "models": {"veil": "zz"}}, bundle)
    assert "degraded" in health_problem({"status": "degraded"}, bundle)
    assert "not a JSON object" in health_problem(["ok"], bundle)
