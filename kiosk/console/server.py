"""Serving the console with uvicorn: on the main thread for `kiosk run`, or on a background thread
(tests, benchmarks) bound to a socket opened first, so port 0 gives a known free port."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette


def uvicorn_server(app: Starlette) -> uvicorn.Server:
    """Our own logging (no uvicorn access log: it would print /login?token=... query strings)."""
    config = uvicorn.Config(
        app, log_config=None, access_log=False, timeout_graceful_shutdown=2, lifespan="off"
    )
    return uvicorn.Server(config)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class ThreadedServer:
    """uvicorn on a daemon thread; `url` is valid once the constructor returns."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        self.socket = bind(host, port)
        self.port = self.socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn_server(app)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the console server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
