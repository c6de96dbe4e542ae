"""`kiosk run`: the capture service with its operator console (docs/service.md)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from kiosk.config import is_camera_spec, load_config
from kiosk.contract.errors import KioskError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="the capture service and its operator console")
    parser.add_argument(
        "--source", help="override [service] source: camera[:N], picamera, or a folder/video"
    )
    parser.add_argument("--port", type=int, help="override [console] port")
    parser.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Runs until SIGTERM/SIGINT; SIGHUP reloads the model bundle (kept only if it verifies)."""
    from kiosk.service.console.app import create_app
    from kiosk.service.console.server import bind, uvicorn_server
    from kiosk.service.loop import KioskService

    # The schema's rules (console exposure, camera spec, backoff...) apply to the overrides too:
    # replacing a section validates it again.
    config = load_config(args.config)
    if args.source:
        source = args.source if is_camera_spec(args.source) else str(Path(args.source).absolute())
        config = dataclasses.replace(
            config, service=dataclasses.replace(config.service, source=source)
        )
    if args.port is not None:
        config = dataclasses.replace(
            config, console=dataclasses.replace(config.console, port=args.port)
        )
    try:
        sock = bind(config.console.host, config.console.port)
    except OSError as exc:
        raise KioskError(
            f"cannot listen on {config.console.host}:{config.console.port} ({exc.strerror}): "
            "is another kiosk service running? Change [console] port otherwise"
        ) from None
    service = KioskService(config)
    server = uvicorn_server(create_app(service, config.console))
    service.start()
    signal.signal(signal.SIGHUP, lambda *_: service.reload())
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: end with exit code 0 after
    # service.stop() (STOPPING=1, camera and store closed) instead of dying by the signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    scheme = "https" if config.console.ssl_certfile else "http"
    print(
        f"kiosk: console on {scheme}://{config.console.host}:{sock.getsockname()[1]}/ "
        f"(source {config.service.source})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run(sockets=[sock])
    finally:
        service.stop()
        sock.close()
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
