"""Deploy with Ansible against fake kiosks: bundle roots in temp folders on Ansible's local
connection, a fake restart command and a fake health command.

The fake kiosk (``FAKE_KIOSK``, run with the kiosk root as its working directory) behaves like
the service after a restart: health reports the bundle ``current`` points at and the sha256 of
each of its model files. ``fault.json`` in the root injects one failure, applied only to bundles
not listed under ``"good"`` so that a rollback to the previous bundle comes up healthy.
Every playbook run costs ~2 s, so each test makes one run and checks all it can on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import deploy.cli
from deploy.bundle import SUMS, Bundle, DeployError
from deploy.cli import main, parse_hosts
from deploy.filter_plugins.kiosk_health import kiosk_health_problem
from kiosk.contract.errors import ModelError
from kiosk.contract.manifest import generate_key
from tests import test_service_loop
from tests.conftest import REPO
from tests.test_service_loop import GOOD, FlakyCamera, make_config, replay, wait_for

started = test_service_loop.started  # the fixture that starts (and stops) services

FAKE_KIOSK = r"""
import hashlib, json, sys
from pathlib import Path

root = Path.cwd()
fault_file = root / "fault.json"
fault = json.loads(fault_file.read_text()) if fault_file.exists() else {}
current = (root / "current").resolve()
faulty = current.name not in fault.get("good", [current.name])
if sys.argv[1] == "restart":
    with open(root / "restarts.log", "a") as log:
        log.write(current.name + "\n")
    sys.exit(3 if faulty and fault.get("restart_fails") else 0)
entries = json.loads((current / "manifest.json").read_text())["models"]
models = {
    name: hashlib.sha256((current / entry["file"]).read_bytes()).hexdigest()
    for name, entry in entries.items()
}
report = {"status": "ok", "bundle": current.name, "models": models,
          "checks": {"ok": True, "error": ""}, "camera": {"ok": True, "message": ""}}
if fault.get("camera_unplugged"):
    report["status"] = "degraded"
    report["camera"] = {"ok": False, "message": "no camera on /dev/video0"}
mode = fault.get("health") if faulty else None
if mode == "no_bundle":
    del report["bundle"]
elif mode == "some_models":
    report["models"] = {"eyes_closed": models["eyes_closed"]}
elif mode == "checks_down":
    report.update(status="degraded", models={}, checks={"ok": False, "error": "veil: bad file"})
print(json.dumps(report))
"""


def make_models(directory: Path, tag: str) -> Path:
    """A models folder with two small fake TFLite files and a manifest that passes the schema."""
    directory.mkdir(parents=True)
    models = {}
    for name, shape in (("eyes_closed", [1, 56, 56, 1]), ("veil", [1, 128, 128, 1])):
        content = f"{name}-{tag}".encode() * 40
        (directory / f"{name}.tflite").write_bytes(content)
        models[name] = {
            "file": f"{name}.tflite",
            "sha256": hashlib.sha256(content).hexdigest(),
            "bytes": len(content),
            "architecture": "SqueezeMiniVGG",
            "input_shape": shape,
            "quantization": "int8",
        }
    (directory / "manifest.json").write_text(json.dumps({"models": models}, indent=1))
    return directory


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Keys, two models folders, the fake kiosk script and a kiosk with bundle v1 installed."""
    base = tmp_path_factory.mktemp("deploy")
    private, public = generate_key(base / "office")
    fake = base / "fake_kiosk.py"
    fake.write_text(FAKE_KIOSK)
    paths = {
        "base": base,
        "key": private,
        "pub": public,
        "fake": fake,
        "v1": make_models(base / "models-v1", "v1"),
        "v2": make_models(base / "models-v2", "v2"),
    }
    roots = [base / "template", base / "second"]
    for root in roots:
        root.mkdir()  # made by the install script on a kiosk
    paths["first_install"] = deploy_captured(paths, "v1", roots, "--no-restart", "--serial", "2")
    paths["template"] = roots[0]
    return paths


def deploy_argv(world: dict[str, Path], models: str, roots: list[Path], *extra: str) -> list[str]:
    """``python -m deploy`` arguments for local kiosk roots with the fake restart and health."""
    fake = f"{sys.executable} {world['fake']}"
    return [
        "--models",
        str(world[models]),
        "--signing-key",
        str(world["key"]),
        "--public-key",
        str(world["pub"]),
        "--kiosk-python",
        sys.executable,
        "--restart",
        f"{fake} restart",
        "--health",
        f"{fake} health",
        "--health-timeout",
        "0.2",
        "--health-interval",
        "0.1",
        *[f"--local={root}" for root in roots],
        *extra,
    ]


def deploy_captured(world: dict[str, Path], models: str, roots: list[Path], *extra: str):
    """Run ``python -m deploy`` in a subprocess (for module-scoped runs shared by tests)."""
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(world["base"] / "ansible-tmp")}
    return subprocess.run(
        [sys.executable, "-m", "deploy", *deploy_argv(world, models, roots, *extra)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def new_kiosk(world: dict[str, Path], root: Path, **fault_settings: object) -> Path:
    """A kiosk running bundle v1 (a copy of the template) with the given fault injected."""
    shutil.copytree(world["template"], root, symlinks=True)
    if fault_settings:
        fault(root, **fault_settings)
    return root


def current(root: Path) -> str:
    return (root / "current").resolve().name


def restarts(root: Path) -> list[str]:
    log = root / "restarts.log"
    return log.read_text().split() if log.exists() else []


def leftovers(root: Path) -> list[str]:
    """What a finished deploy must never leave behind: incoming folders, temp link, lock."""
    names = [p.name for p in (root / "bundles").iterdir() if p.name.startswith(".incoming-")]
    return names + [n for n in (".current.tmp", ".deploy-lock") if os.path.lexists(root / n)]


def fault(root: Path, **settings: object) -> None:
    (root / "fault.json").write_text(json.dumps({"good": [current(root)], **settings}))


def test_first_install_without_restart(world):
    assert world["first_install"].returncode == 0, world["first_install"].stdout[-3000:]
    assert "is running on every kiosk" in world["first_install"].stdout
    root = world["template"]
    assert os.readlink(root / "current").startswith("bundles/")
    assert (root / "current" / "manifest.sig").is_file()
    assert not restarts(root) and not leftovers(root)


@pytest.fixture(scope="module")
def fleet(world: dict[str, Path]) -> dict[str, object]:
    """One playbook run, all kiosks in one batch, each with its own trouble."""
    base = world["base"] / "fleet"
    kiosks = {
        "leftover_and_camera": new_kiosk(world, base / "k1", camera_unplugged=True),
        "real_dir": new_kiosk(world, base / "k2"),
        "restart_fails": new_kiosk(world, base / "k3", restart_fails=True),
        "no_bundle": new_kiosk(world, base / "k4", health="no_bundle"),
        "some_models": new_kiosk(world, base / "k5", health="some_models"),
        "checks_down": new_kiosk(world, base / "k6", health="checks_down"),
        "locked": new_kiosk(world, base / "k7"),
    }
    k1, k2, k7 = kiosks["leftover_and_camera"], kiosks["real_dir"], kiosks["locked"]
    (k1 / "fault.json").write_text(json.dumps({"camera_unplugged": True}))  # for every bundle
    (k1 / ".current.tmp").mkdir()  # an interrupted switch left a real directory at the temp name
    (k1 / ".current.tmp" / "junk").write_text("x")
    target = (k2 / "current").resolve()  # models copied in by hand: a real directory at current
    (k2 / "current").unlink()
    shutil.copytree(target, k2 / "current")
    shutil.rmtree(target)
    (k7 / ".deploy-lock").symlink_to("alice@laptop pid 42, since 09:00")
    old = current(k1)
    result = deploy_captured(
        world,
        "v2",
        list(kiosks.values()),
        "nobody@127.0.0.1",  # nothing listens on port 1: unreachable
        "--serial",
        "9",
        "--max-fail-percentage",
        "100",
        "--ansible-arg=-e",
        "--ansible-arg=ansible_port=1",
        "--ansible-arg=--forks=8",
    )
    return {"result": result, "old": old, "new": current(k1), **kiosks}


def test_deploy_switches_despite_leftovers_and_an_unplugged_camera(fleet):
    k1, k2 = fleet["leftover_and_camera"], fleet["real_dir"]
    new = fleet["new"]
    assert new != fleet["old"] and current(k2) == new
    manifest_sha = json.loads((k1 / "current" / "bundle.json").read_text())["manifest_sha256"]
    assert new.endswith(manifest_sha[:12])
    assert restarts(k1) == [new] and restarts(k2) == [new]
    assert not leftovers(k1) and not leftovers(k2)
    kept = k2 / "bundles" / f"0-was-current-before-{new}"
    assert (kept / "manifest.json").is_file()  # the hand-made folder is the rollback target now
    assert sorted(p.name for p in (k1 / "bundles").iterdir()) == sorted([fleet["old"], new])


@pytest.mark.parametrize(
    ("kiosk", "says"),
    [
        ("restart_fails", "Restart the service"),
        ("no_bundle", "service reports bundle None"),
        ("some_models", "models not reported: veil"),
        ("checks_down", "model checks not loaded: veil: bad file"),
    ],
)
def test_failed_kiosk_rolls_back_to_a_healthy_previous_bundle(fleet, kiosk, says):
    root, old = fleet[kiosk], fleet["old"]
    out = fleet["result"].stdout
    assert current(root) == old
    assert restarts(root) == [fleet["new"], old]  # the new bundle, then back
    assert [p.name for p in (root / "bundles").iterdir()] == [old]  # failed bundle removed
    assert not leftovers(root)
    assert says in out
    assert f"rolled back to bundles/{old}, healthy again" in out


def test_unreachable_kiosk_and_held_lock_are_told_apart(fleet):
    result, k7 = fleet["result"], fleet["locked"]
    assert result.returncode == 1
    assert "UNREACHABLE" in result.stdout
    assert "could not be reached: nobody@127.0.0.1 (check the host name" in result.stderr
    failed = "failed: local-3, local-4, local-5, local-6, local-7 (fatal above"
    assert "running on 2 of 8 kiosk(s) tried" in result.stderr and failed in result.stderr
    assert "another deploy holds the lock" in result.stdout
    assert "alice@laptop pid 42" in result.stdout
    assert (k7 / ".deploy-lock").is_symlink()  # someone else's lock is left alone
    assert not restarts(k7) and current(k7) == fleet["old"]


@pytest.fixture()
def kiosk(world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ANSIBLE_LOCAL_TEMP", str(tmp_path / "ansible-tmp"))
    return new_kiosk(world, tmp_path / "k1")


def test_serial_batches_stop_the_rollout_after_a_failed_kiosk(world, kiosk, tmp_path, capfd):
    second = new_kiosk(world, tmp_path / "k2")
    old = current(kiosk)
    fault(kiosk, restart_fails=True)
    # default: one canary kiosk, then batches; max_fail_percentage 0
    assert main(deploy_argv(world, "v2", [kiosk, second])) == 1
    err = capfd.readouterr().err
    assert "running on 0 of 1 kiosk(s) tried; failed: local-1" in err
    assert "not tried, the rollout stopped (max_fail_percentage): local-2" in err
    assert current(kiosk) == old and len(restarts(kiosk)) == 2
    assert current(second) == old and not restarts(second)  # never touched


def sabotaged(monkeypatch: pytest.MonkeyPatch, name: str, spoil) -> None:
    """Let ``spoil(result)`` damage what ``deploy.cli.<name>`` made before the playbook runs."""
    real = getattr(deploy.cli, name)

    def spoiled(*args: object):
        result = real(*args)
        spoil(result)
        return result

    monkeypatch.setattr(deploy.cli, name, spoiled)


def test_interrupted_copy_leaves_no_incoming_folder(world, kiosk, monkeypatch, capfd):
    old = current(kiosk)

    def truncate(archive: Path) -> None:  # the transfer broke off (or the disk filled up)
        data = archive.read_bytes()
        archive.write_bytes(data[: len(data) // 2])

    sabotaged(monkeypatch, "pack", truncate)
    assert main(deploy_argv(world, "v2", [kiosk])) == 1
    out = capfd.readouterr().out
    assert "Copy the bundle into the incoming folder" in out and "current left unchanged" in out
    assert current(kiosk) == old and not restarts(kiosk) and not leftovers(kiosk)
    assert [p.name for p in (kiosk / "bundles").iterdir()] == [old]


def test_bundle_changed_after_signing_is_refused_on_the_kiosk(world, kiosk, monkeypatch, capfd):
    def respell(bundle: Bundle) -> None:
        manifest = bundle.path / "manifest.json"
        manifest.write_text(manifest.read_text() + " ")  # same models, other bytes
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
        sums = [
            f"{digest}  manifest.json" if line.endswith("  manifest.json") else line
            for line in (bundle.path / SUMS).read_text().splitlines()
        ]
        (bundle.path / SUMS).write_text("\n".join(sums) + "\n")  # only the signature can tell

    old = current(kiosk)
    sabotaged(monkeypatch, "build_bundle", respell)
    assert main(deploy_argv(world, "v2", [kiosk])) == 1
    out = capfd.readouterr().out
    assert "Check the manifest signature" in out and "changed after signing" in out
    assert current(kiosk) == old and not restarts(kiosk) and not leftovers(kiosk)


@pytest.mark.parametrize(
    "kiosks_value",
    [
        "x; touch {p}",
        "$(touch {p})",
        "`touch {p}`",
        '"; touch {p}; echo "',
        "-oProxyCommand=touch {p} pi@k1",
        "pi@k1 && touch {p}",
    ],
)
def test_make_deploy_runs_no_injected_command(tmp_path, kiosks_value):
    pwned = tmp_path / "PWNED"
    env = {**os.environ, "DEPLOY_SIGNING_KEY": str(tmp_path / "none.key")}
    result = subprocess.run(
        ["make", "-s", "-C", str(REPO), "deploy", f"KIOSKS={kiosks_value.format(p=pwned)}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0 and not pwned.exists()
    # make reads $(...) as a make variable (empty): "no kiosks given" for that one
    assert "deploy: not a kiosk name" in result.stderr or "deploy: no kiosks" in result.stderr


def test_make_deploy_without_kiosks_says_how():
    result = subprocess.run(
        ["make", "-s", "-C", str(REPO), "deploy", "KIOSKS="],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and 'KIOSKS="pi@kiosk1 pi@kiosk2"' in result.stderr


def test_host_names_are_data():
    assert parse_hosts(["pi@kiosk1 pi@kiosk-2.lan", "10.0.0.7"]) == [
        "pi@kiosk1",
        "pi@kiosk-2.lan",
        "10.0.0.7",
    ]
    for bad in ("-oProxyCommand=x", "a;b", "pi@", "@host", "a/b", "$(x)", "k1|k2", "*"):
        with pytest.raises(DeployError, match="not a kiosk name"):
            parse_hosts([bad])


def report(**changes: object) -> str:
    body = {
        "status": "degraded",
        "bundle": "v2",
        "models": {"eyes_closed": "a" * 64, "veil": "b" * 64},
        "checks": {"ok": True, "error": ""},
        "camera": {"ok": False, "message": "no camera"},
    }
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not None})


MODELS = {"eyes_closed": "a" * 64, "veil": "b" * 64}


@pytest.mark.parametrize(
    ("stdout", "problem"),
    [
        (report(), ""),  # camera unplugged: the bundle is fine
        (report(bundle=None), "service reports bundle None"),
        (report(bundle="v1"), "service reports bundle 'v1'"),
        (report(models={"eyes_closed": "a" * 64}), "models not reported: veil"),
        (report(models={**MODELS, "extra": "c" * 64}), "models not in the bundle: extra"),
        (report(models={**MODELS, "veil": "c" * 64}), "models with another sha256: veil"),
        (report(models=None), "health report has no 'models' object"),
        (report(checks={"ok": False, "error": "x"}), "model checks not loaded: x"),
        (report(checks={"ok": "yes"}), "model checks not loaded"),
        (report(checks=None), "health report has no 'checks' object"),
        ("<html>502</html>", "health output is not JSON"),
        ("", "health output is not JSON"),
        ("[]", "health output is not a JSON object"),
    ],
)
def test_health_gate_rules(stdout, problem):
    found = kiosk_health_problem(stdout, "v2", MODELS)
    assert found.startswith(problem) if problem else found == ""


def test_rollback_gate_skips_unknown_model_hashes():
    assert kiosk_health_problem(report(models={}), "v2", None) == ""
    assert kiosk_health_problem(report(models={}), "v1", None).startswith("service reports")


def test_service_health_passes_the_gate_without_a_camera_and_fails_without_checks(
    tmp_path, started
):
    never = FlakyCamera(fail_opens=10**6, frames_per_open=0)  # unplugged for good
    service = started(make_config(tmp_path / "a"), never)
    wait_for(lambda: never.attempts >= 2)
    code, body = service.health()
    assert code == 200 and body["status"] == "degraded" and not body["camera"]["ok"]
    assert body["checks"] == {"ok": True, "error": ""}
    assert kiosk_health_problem(json.dumps(body), "bundle-1", {"fake": "ab" * 32}) == ""

    def broken(config: object) -> None:
        raise ModelError("model file veil.tflite is missing")

    down = started(make_config(tmp_path / "b"), replay([GOOD]), broken)
    code, body = down.health()
    assert code == 503 and body["checks"]["ok"] is False
    problem = kiosk_health_problem(json.dumps(body), "bundle-1", {"fake": "ab" * 32})
    assert problem == "model checks not loaded: model file veil.tflite is missing"
