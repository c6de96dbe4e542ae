"""``python -m deploy``: build and sign the bundle, write the inventory, run the playbook.

Kiosks arrive as data, never through a shell: ``make deploy`` hands ``KIOSKS`` over in the
environment, each name is checked against a host-name pattern (nothing that a shell or ssh would
read as syntax or an option), written into a generated JSON inventory and passed to
``ansible-playbook`` as an argv list. Exit codes: 0 every kiosk runs the new bundle; 1 some kiosk
failed (rolled back) or could not be reached; 2 bad usage, models, key or Ansible missing.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.bundle import Bundle, DeployError, build_bundle, pack

log = logging.getLogger(__name__)

PLAYBOOK = Path(__file__).with_name("playbook.yml")
DEFAULT_ROOT = "/var/lib/kiosk/models"
DEFAULT_PUBLIC_KEY = "/etc/kiosk/models.pub"  # installed by install-rpi.sh --public-key
DEFAULT_PYTHON = "/opt/kiosk/venv/bin/python"
DEFAULT_RESTART = "sudo systemctl restart kiosk.service"
DEFAULT_HEALTH = "curl -sS --max-time 5 http://127.0.0.1:8080/health"  # prints the body on 503 too
# [user@]host: letters, digits, dot, dash, underscore; no leading dash (ssh would read an option).
HOST = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9_][A-Za-z0-9._-]*")
# A PLAY RECAP line: "kiosk1 : ok=9 changed=4 unreachable=0 failed=1 skipped=2 rescued=1 ...".
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_hosts(words: list[str]) -> list[str]:
    """Split ``KIOSKS``-style words into hosts; refuse anything that is not ``[user@]host``."""
    hosts = [host for word in words for host in word.split()]
    bad = [host for host in hosts if not HOST.fullmatch(host)]
    if bad:
        raise DeployError(
            f"not a kiosk name: {', '.join(map(repr, bad))}; give [user@]host names separated "
            'by spaces, e.g. KIOSKS="pi@kiosk1 pi@kiosk2" (ssh port etc. go in ~/.ssh/config)'
        )
    return hosts


def inventory(hosts: list[str], local_roots: list[Path], settings: dict[str, Any]) -> dict:
    """The ``kiosks`` group: ssh hosts and local bundle roots (this machine), with ``settings``."""
    members: dict[str, dict[str, Any]] = {}
    for host in hosts:
        user, _, name = host.rpartition("@")
        members[host] = {"ansible_host": name, **({"ansible_user": user} if user else {})}
    for index, root in enumerate(local_roots, 1):
        members[f"local-{index}"] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "kiosk_root": str(root.resolve()),
        }
    return {"kiosks": {"hosts": members, "vars": settings}}


def ansible_playbook() -> str:
    """The ansible-playbook next to this Python (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("ansible-playbook")
    found = str(beside) if beside.is_file() else shutil.which("ansible-playbook")
    if found is None:
        raise DeployError("ansible-playbook not found: pip install -e '.[deploy]' (ansible-core)")
    return found


def run_playbook(
    bundle: Bundle,
    hosts: list[str],
    local_roots: list[Path],
    settings: dict[str, Any],
    serial: list[int | str],
    max_fail_percentage: int,
    extra: list[str],
) -> tuple[int, dict[str, str]]:
    """Run the playbook on the kiosks, its output passed through.

    Returns ansible-playbook's exit status and each kiosk's result from the PLAY RECAP: "ok",
    "failed" or "unreachable"; a kiosk missing there was never tried (the rollout stopped).
    """
    owner = (
        f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}, bundle {bundle.version}, "
        f"since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    )
    variables = {
        "bundle_archive": str(pack(bundle)),
        "bundle_version": bundle.version,
        "bundle_models": bundle.models,
        "deploy_owner": owner,
        "deploy_serial": serial,
        "deploy_max_fail_percentage": max_fail_percentage,
    }
    with tempfile.TemporaryDirectory(prefix="kiosk-deploy-") as work:
        inventory_file = Path(work) / "inventory.json"
        inventory_file.write_text(json.dumps(inventory(hosts, local_roots, settings)))
        vars_file = Path(work) / "vars.json"
        vars_file.write_text(json.dumps(variables))
        argv = [
            ansible_playbook(),
            "-i",
            str(inventory_file),
            "-e",
            f"@{vars_file}",
            *extra,
            str(PLAYBOOK),
        ]
        for index, root in enumerate(local_roots, 1):
            log.info("local-%d is %s", index, root)
        log.info("running %s", shlex.join(argv))
        # Pipelining runs each module over the open connection instead of copying it first;
        # nothing here uses become, so sudo's requiretty cannot get in the way.
        env = {"ANSIBLE_PIPELINING": "True", **os.environ}
        if sys.stdout.isatty():
            env.setdefault("ANSIBLE_FORCE_COLOR", "True")
        results: dict[str, str] = {}
        with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) as process:
            for line in process.stdout or ():
                sys.stdout.write(line)
                if match := RECAP.match(ANSI.sub("", line)):
                    host, unreachable, failed = match.groups()
                    results[host] = (
                        "unreachable" if int(unreachable) else "failed" if int(failed) else "ok"
                    )
            sys.stdout.flush()
        return process.returncode, results


def outcome(
    status: int, results: dict[str, str], kiosks: list[str], version: str
) -> tuple[int, str]:
    """(our exit code, summary) from ansible-playbook's status and the per-kiosk results."""
    if status == 0:
        return 0, f"bundle {version} is running on every kiosk ({len(results)})"
    if not results:
        return 2, f"ansible-playbook failed with exit status {status} (see above)"
    by_result = {
        result: sorted(host for host, got in results.items() if got == result)
        for result in ("ok", "failed", "unreachable")
    }
    parts = [f"running on {len(by_result['ok'])} of {len(results)} kiosk(s) tried"]
    if by_result["failed"]:
        parts.append(
            f"failed: {', '.join(by_result['failed'])} (fatal above says why; rolled back "
            "where it had switched)"
        )
    if by_result["unreachable"]:
        parts.append(
            f"could not be reached: {', '.join(by_result['unreachable'])} (check the host "
            "name, the network and ssh key login: `ssh KIOSK true` must work without a password)"
        )
    untried = [host for host in kiosks if host not in results]
    if untried:
        parts.append(f"not tried, the rollout stopped (max_fail_percentage): {', '.join(untried)}")
    return 1, f"bundle {version}: " + "; ".join(parts)


def parse_serial(text: str) -> list[int | str]:
    """``1,25%`` -> [1, "25%"]: a canary kiosk first, then batches of a quarter of the fleet."""
    batches: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        if re.fullmatch(r"[1-9][0-9]?%|100%", part):
            batches.append(part)
        elif part.isdigit() and int(part) > 0:
            batches.append(int(part))
        else:
            raise argparse.ArgumentTypeError(f"batch {part!r} is neither a count nor a percentage")
    return batches


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy",
        description="Build and sign models/ as a bundle and deploy it to kiosks with Ansible.",
    )
    parser.add_argument("hosts", nargs="*", metavar="KIOSK", help="[user@]host (ssh)")
    parser.add_argument("--kiosks", default="", help='space-separated kiosks, as in KIOSKS="..."')
    parser.add_argument(
        "--args", default="", help="more options as one shell-quoted string (make's DEPLOY_ARGS)"
    )
    parser.add_argument(
        "--local",
        type=Path,
        action="append",
        default=[],
        metavar="ROOT",
        help="a bundle root on this machine (Ansible's local connection; repeatable)",
    )
    parser.add_argument(
        "--inventory",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="an Ansible inventory whose group `kiosks` lists more kiosks (repeatable)",
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="models folder")
    parser.add_argument(
        "--signing-key",
        type=Path,
        default=os.environ.get("DEPLOY_SIGNING_KEY") or None,
        help="Ed25519 private key (default: $DEPLOY_SIGNING_KEY)",
    )
    parser.add_argument("--root", default=DEFAULT_ROOT, help="bundle root on the kiosks")
    parser.add_argument("--public-key", default=DEFAULT_PUBLIC_KEY, help="on the kiosks")
    parser.add_argument("--kiosk-python", default=DEFAULT_PYTHON, help="the kiosks' venv python")
    parser.add_argument("--restart", default=DEFAULT_RESTART, help="restart command on a kiosk")
    parser.add_argument("--health", default=DEFAULT_HEALTH, help="prints GET /health JSON")
    parser.add_argument("--health-timeout", type=float, default=90.0, metavar="SECONDS")
    parser.add_argument("--health-interval", type=float, default=3.0, metavar="SECONDS")
    parser.add_argument("--keep", type=int, default=3, help="bundles kept per kiosk (>= 2)")
    parser.add_argument(
        "--serial",
        type=parse_serial,
        default=[1, "25%"],
        help="batch sizes, e.g. 1,25%% (default: one canary kiosk, then quarters)",
    )
    parser.add_argument(
        "--max-fail-percentage",
        type=int,
        default=0,
        help="stop the rollout when more than this %% of a batch failed (default 0)",
    )
    parser.add_argument(
        "--no-restart",
        action="store_true",
        help="install and switch only (first install, service not running yet)",
    )
    parser.add_argument(
        "--ansible-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra ansible-playbook argument, e.g. --ansible-arg=-vv (repeatable)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="deploy: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.args:
        args = parser.parse_args(
            [*(argv if argv is not None else sys.argv[1:]), *shlex.split(args.args)]
        )
    try:
        hosts = parse_hosts([*args.hosts, args.kiosks])
        if not hosts and not args.local and not args.inventory:
            raise DeployError('no kiosks given: make deploy KIOSKS="pi@kiosk1 pi@kiosk2"')
        if args.keep < 2:
            raise DeployError(
                "--keep must be at least 2 (the new bundle and the one to roll back to)"
            )
        if args.signing_key is None:
            raise DeployError(
                "no signing key: set DEPLOY_SIGNING_KEY (or --signing-key) to the private key "
                "made by `python -m kiosk bundle keygen --out PREFIX`"
            )
        ansible_playbook()  # refuse before building when Ansible is missing
        settings = {
            "kiosk_root": args.root,
            "kiosk_public_key": args.public_key,
            "kiosk_python": args.kiosk_python,
            "kiosk_restart_command": args.restart,
            "kiosk_health_command": args.health,
            "health_delay_s": args.health_interval,
            "health_retries": max(
                1, math.ceil(args.health_timeout / max(args.health_interval, 0.1))
            ),
            "keep_bundles": args.keep,
            "no_restart": args.no_restart,
        }
        with tempfile.TemporaryDirectory(prefix="kiosk-bundle-") as staging:
            bundle = build_bundle(args.models, Path(staging), args.signing_key)
            status, results = run_playbook(
                bundle,
                hosts,
                args.local,
                settings,
                args.serial,
                args.max_fail_percentage,
                [*(f"--inventory={path}" for path in args.inventory), *args.ansible_arg],
            )
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    kiosks = [*hosts, *(f"local-{index}" for index in range(1, len(args.local) + 1))]
    code, summary = outcome(status, results, kiosks, bundle.version)
    print(f"deploy: {summary}", file=sys.stderr if code else sys.stdout)
    return code
