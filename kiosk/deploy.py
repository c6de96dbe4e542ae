"""Ship the models as a versioned bundle to kiosks: `make deploy KIOSKS="pi@kiosk1 pi@kiosk2"`.

Runs on the engineer's machine (stdlib only). On each kiosk, under ``--root`` (default
``/var/lib/kiosk/models``)::

    bundles/<version>/   manifest.json, the model files it lists, SHA256SUMS, bundle.json
    current -> bundles/<version>      the kiosk config's [models] dir is <root>/current

``<version>`` is ``<UTC build time, ms>-<first 12 hex of the manifest's sha256>``: names sort in
build order and say which manifest they carry. Per kiosk, in order:

1. copy the bundle into ``bundles/.incoming-<version>`` and check every file there with
   ``sha256sum --check`` (on the kiosk, so the bytes that arrived are the ones checked), then
   rename it to ``bundles/<version>``; a failed check stops here with ``current`` untouched;
2. switch ``current`` atomically (``ln -sfn`` to a temp name, ``mv -T`` over ``current``);
3. restart the service (``--restart``) and poll its health (``--health``, run on the kiosk;
   it must print ``GET /health`` JSON) until ``status`` is ``ok``, the reported bundle is this
   version and every reported model hash is the bundle's;
4. if that fails within ``--health-timeout``: switch ``current`` back to the previous bundle,
   restart, check health again, delete the failed bundle and report the kiosk as failed;
5. keep the newest ``--keep`` bundles (always including ``current``), delete the rest.

A ``.deploy-lock`` directory keeps two deploys to one kiosk apart. The rollout stops at the
first failed kiosk unless ``--keep-going``. Transports: ``ssh`` (target
= ``[user@]host``, rsync over ssh) and ``local`` (target = a root directory on this machine, for
tests and for installing the first bundle on a kiosk itself). Both run the same commands.
Exit codes: 0 all kiosks healthy on the new bundle, 1 some kiosk failed, 2 bad bundle or usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from kiosk.errors import KioskError

log = logging.getLogger("kiosk.deploy")

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
BUNDLE_INFO = "bundle.json"
DEFAULT_ROOT = "/var/lib/kiosk/models"
DEFAULT_RESTART = "sudo systemctl restart kiosk.service"
DEFAULT_HEALTH = "curl -sS --max-time 5 http://127.0.0.1:8080/health"  # body on 503 too


class DeployError(KioskError):
    """A bundle that cannot be built, copied, verified or brought up healthy on a kiosk."""


@dataclass(frozen=True)
class Bundle:
    version: str
    path: Path
    models: dict[str, str]  # name -> sha256, what a healthy kiosk must report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_revision(directory: Path) -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip()


def build_bundle(models_dir: Path, staging: Path) -> Bundle:
    """Copy the manifest and the files it lists into ``staging/<version>``, hashes checked.

    A file that differs from its manifest hash is refused here, before any kiosk sees it.
    """
    manifest_path = models_dir / MANIFEST
    try:
        manifest_bytes = manifest_path.read_bytes()
        entries = json.loads(manifest_bytes)["models"]
        files = {
            name: (str(entry["file"]), str(entry["sha256"])) for name, entry in entries.items()
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeployError(f"cannot read the model manifest {manifest_path}: {exc}") from None
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    now = datetime.now(UTC)
    version = f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{manifest_sha[:12]}"
    bundle = staging / version
    bundle.mkdir(parents=True)
    sums = [f"{manifest_sha}  {MANIFEST}"]
    for name, (file, expected) in sorted(files.items()):
        relative = PurePosixPath(file)
        if relative.is_absolute() or ".." in relative.parts:
            raise DeployError(
                f"manifest entry {name!r}: file {file!r} must lie inside {models_dir}"
            )
        source = models_dir / file
        if not source.is_file():
            raise DeployError(f"model file {source} for {name!r} is missing")
        if _sha256(source) != expected:
            raise DeployError(f"model file {source} does not match its manifest sha256")
        (bundle / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, bundle / file)
        sums.append(f"{expected}  {file}")
    shutil.copy2(manifest_path, bundle / MANIFEST)
    (bundle / SUMS).write_text("\n".join(sums) + "\n")
    info = {
        "version": version,
        "manifest_sha256": manifest_sha,
        "git_revision": _git_revision(models_dir),
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (bundle / BUNDLE_INFO).write_text(json.dumps(info, indent=1) + "\n")
    return Bundle(version, bundle, {name: sha for name, (_, sha) in files.items()})


class Transport(Protocol):
    """How commands reach a kiosk and how a folder is copied onto it."""

    label: str

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]: ...

    def push(self, local: Path, remote: str) -> None: ...


class LocalTransport:
    """The kiosk is this machine: commands run here, folders are copied with rsync or cp."""

    def __init__(self, label: str = "local") -> None:
        self.label = label

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["sh", "-c", command], check, self.label)

    def push(self, local: Path, remote: str) -> None:
        if shutil.which("rsync"):
            _run(["rsync", "-a", f"{local}/", f"{remote}/"], True, self.label)
        else:
            _run(["cp", "-R", "-p", "-T", str(local), remote], True, self.label)


class SshTransport:
    """The kiosk is ``[user@]host``: commands via ssh, folders via rsync over ssh."""

    def __init__(self, host: str, ssh_options: list[str]) -> None:
        self.label = host
        self.ssh = ["ssh", "-o", "BatchMode=yes", *ssh_options]

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([*self.ssh, self.label, command], check, self.label)

    def push(self, local: Path, remote: str) -> None:
        rsh = shlex.join(self.ssh)
        _run(["rsync", "-a", "-e", rsh, f"{local}/", f"{self.label}:{remote}/"], True, self.label)


def _run(argv: list[str], check: bool, label: str) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"{label}: {shlex.join(argv)[:200]} failed: {exc}") from None
    if check and result.returncode != 0:
        detail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise DeployError(
            f"{label}: {shlex.join(argv)[:200]} exited with {result.returncode}: {detail}"
        )
    return result


@dataclass(frozen=True)
class Options:
    root: str = DEFAULT_ROOT
    restart: str = DEFAULT_RESTART
    health: str = DEFAULT_HEALTH
    health_timeout_s: float = 90.0
    health_interval_s: float = 3.0
    keep: int = 3
    no_restart: bool = False


def _status_problem(report: Any) -> str | None:
    if not isinstance(report, dict):
        return "health report is not a JSON object"
    if report.get("status") != "ok":
        return f"status is {report.get('status')!r}"
    return None


def health_problem(report: Any, bundle: Bundle) -> str | None:
    """Why a ``GET /health`` report does not show ``bundle`` running healthy; None if it does."""
    problem = _status_problem(report)
    if problem:
        return problem
    running = report.get("bundle")
    if running is not None and PurePosixPath(str(running)).name != bundle.version:
        return f"the service runs bundle {running!r}, not {bundle.version}"
    models = report.get("models")
    if not isinstance(models, dict) or not models:
        return "the health report lists no models"
    for name, sha in models.items():
        if bundle.models.get(name) != sha:
            return f"model {name!r} runs with sha256 {str(sha)[:12]}..., not the bundle's"
    return None


class Deployment:
    """One bundle onto one kiosk; see the module docstring for the steps."""

    def __init__(self, transport: Transport, bundle: Bundle, options: Options) -> None:
        self.t = transport
        self.bundle = bundle
        self.options = options
        self.root = PurePosixPath(options.root)

    def run(self) -> None:
        lock = self.root / ".deploy-lock"
        # mkdir is atomic: a second deploy to the same kiosk stops here instead of interleaving.
        taken = self.t.run(f"mkdir -p {_q(self.root / 'bundles')} && mkdir {_q(lock)}", check=False)
        if taken.returncode != 0:
            raise DeployError(
                f"{self.t.label}: another deploy holds {lock} (if none is running, an earlier "
                "one was interrupted: remove that directory)"
            )
        try:
            self.install()
            previous = self.current_target()
            self.switch(f"bundles/{self.bundle.version}")
            if not self.options.no_restart:
                problem = self.restart_and_check()
                if problem:
                    self.roll_back(previous, problem)
            self.prune()
        finally:
            self.t.run(f"rmdir {_q(lock)}", check=False)

    def install(self) -> None:
        final = self.root / "bundles" / self.bundle.version
        incoming = self.root / "bundles" / f".incoming-{self.bundle.version}"
        if self.t.run(f"test -d {_q(final)}", check=False).returncode == 0:
            log.info("%s: bundle %s already there; checking it", self.t.label, self.bundle.version)
            self.verify(final)
            return
        self.t.run(f"rm -rf {_q(incoming)} && mkdir -p {_q(incoming)}")
        self.t.push(self.bundle.path, str(incoming))
        try:
            self.verify(incoming)
        except DeployError:
            self.t.run(f"rm -rf {_q(incoming)}", check=False)
            raise
        self.t.run(f"mv -T {_q(incoming)} {_q(final)}")
        log.info("%s: bundle %s copied and verified", self.t.label, self.bundle.version)

    def verify(self, directory: PurePosixPath) -> None:
        result = self.t.run(f"cd {_q(directory)} && sha256sum --check --strict {SUMS}", check=False)
        if result.returncode != 0:
            bad = [line for line in result.stdout.splitlines() if not line.endswith(": OK")]
            raise DeployError(
                f"{self.t.label}: bundle {self.bundle.version} arrived damaged "
                f"({'; '.join(bad) or result.stderr.strip()}); `current` left unchanged"
            )

    def current_target(self) -> str | None:
        result = self.t.run(f"readlink {_q(self.root / 'current')}", check=False)
        return result.stdout.strip() or None

    def switch(self, target: str) -> None:
        temp = self.root / ".current.tmp"
        self.t.run(
            f"ln -sfn {_q(target)} {_q(temp)} && mv -T {_q(temp)} {_q(self.root / 'current')}"
        )
        log.info("%s: current -> %s", self.t.label, target)

    def restart_and_check(self) -> str | None:
        problem = self.restart_and_wait(lambda report: health_problem(report, self.bundle))
        if problem is None:
            log.info("%s: healthy on %s", self.t.label, self.bundle.version)
        return problem

    def restart_and_wait(self, problem_of: Callable[[Any], str | None]) -> str | None:
        """Restart, then poll the health command until ``problem_of`` finds none or time is up."""
        self.t.run(self.options.restart)
        deadline = time.monotonic() + self.options.health_timeout_s
        while True:
            result = self.t.run(self.options.health, check=False)
            if result.returncode != 0:
                problem = f"health command failed: {(result.stderr or result.stdout).strip()}"
            else:
                try:
                    problem = problem_of(json.loads(result.stdout))
                except json.JSONDecodeError:
                    problem = "health output is not JSON"
            if problem is None or time.monotonic() >= deadline:
                return problem
            time.sleep(self.options.health_interval_s)

    def roll_back(self, previous: str | None, problem: str) -> None:
        failed = f"{self.t.label}: bundle {self.bundle.version} is unhealthy ({problem})"
        if previous is None:
            raise DeployError(f"{failed}; no previous bundle to roll back to")
        self.switch(previous)
        after = self.restart_and_wait(_status_problem)
        self.t.run(f"rm -rf {_q(self.root / 'bundles' / self.bundle.version)}")
        state = "healthy again" if after is None else f"STILL UNHEALTHY: {after}"
        raise DeployError(f"{failed}; rolled back to {previous}, {state}")

    def prune(self) -> None:
        """Keep the newest ``keep`` bundles and whatever ``current`` points at."""
        listing = self.t.run(f"ls -1 {_q(self.root / 'bundles')}").stdout.split()
        current = PurePosixPath(self.current_target() or "").name
        bundles = sorted(name for name in listing if not name.startswith("."))
        stale = [n for n in bundles[: -self.options.keep] if n != current]
        stale += [n for n in listing if n.startswith(".incoming-")]
        if stale:
            paths = " ".join(_q(self.root / "bundles" / name) for name in stale)
            self.t.run(f"rm -rf {paths}")
            log.info("%s: removed old bundles %s", self.t.label, ", ".join(stale))


def _q(path: PurePosixPath | str) -> str:
    return shlex.quote(str(path))


def rollout(deployments: list[Deployment], keep_going: bool = False) -> tuple[int, list[str]]:
    """Deploy kiosk after kiosk; (healthy count, failures). Stops at a failure unless keep_going."""
    healthy, failures = 0, []
    for deployment in deployments:
        try:
            deployment.run()
            healthy += 1
        except DeployError as exc:
            log.error("%s", exc)
            failures.append(str(exc))
            if not keep_going:
                break
    return healthy, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kiosk.deploy",
        description="Deploy models/ as a versioned, hash-checked bundle; roll back on failure.",
    )
    parser.add_argument(
        "targets",
        nargs="+",
        metavar="KIOSK",
        help="[user@]host, or with --transport local a root directory",
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="models directory")
    parser.add_argument("--transport", choices=("ssh", "local"), default="ssh")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="bundle root on the kiosks (ssh)")
    parser.add_argument("--restart", default=DEFAULT_RESTART, help="service restart command")
    parser.add_argument("--health", default=DEFAULT_HEALTH, help="prints GET /health JSON")
    parser.add_argument("--health-timeout", type=float, default=90.0, metavar="SECONDS")
    parser.add_argument("--keep", type=int, default=3, help="bundles kept per kiosk (>= 2)")
    parser.add_argument(
        "--no-restart",
        action="store_true",
        help="install and switch only (first install, service not running)",
    )
    parser.add_argument("--keep-going", action="store_true", help="continue after a failed kiosk")
    parser.add_argument(
        "--ssh-option",
        action="append",
        default=[],
        metavar="OPT",
        help="extra ssh argument, e.g. --ssh-option=-p2222 (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="deploy: %(message)s")
    if args.keep < 2:
        parser.error("--keep must be at least 2 (the new bundle and the one to roll back to)")
    with tempfile.TemporaryDirectory(prefix="kiosk-bundle-") as staging:
        try:
            bundle = build_bundle(args.models, Path(staging))
        except DeployError as exc:
            print(f"deploy: {exc}", file=sys.stderr)
            return 2
        log.info("bundle %s: %d models", bundle.version, len(bundle.models))
        deployments = []
        for target in args.targets:
            options = Options(
                root=target if args.transport == "local" else args.root,
                restart=args.restart,
                health=args.health,
                health_timeout_s=args.health_timeout,
                keep=args.keep,
                no_restart=args.no_restart,
            )
            transport: Transport = (
                LocalTransport(target)
                if args.transport == "local"
                else SshTransport(target, args.ssh_option)
            )
            deployments.append(Deployment(transport, bundle, options))
        healthy, failures = rollout(deployments, args.keep_going)
    state = "installed (not restarted)" if args.no_restart else "healthy"
    print(f"deploy: bundle {bundle.version} {state} on {healthy} of {len(deployments)} kiosk(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
