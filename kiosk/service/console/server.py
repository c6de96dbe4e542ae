"""Serving the console with uvicorn: on the main thread for `kiosk run`, or on a background thread
(tests, benchmarks) bound to a socket opened first, so port 0 gives a known free port.

uvicorn alone keeps a connection that never sends a request (or sends its headers byte by byte)
open forever, and accepts connections until the process runs out of file descriptors (the camera
and the store need some too); each failed accept then logs a traceback. `GuardedH11Protocol` adds
the missing guards, and `FloodFilter` turns a flood of identical log lines into one a minute.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import resource
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from kiosk.config import ConsoleConfig

log = logging.getLogger(__name__)

FLOOD_INTERVAL_S = 60.0
FLOOD_LOGGERS = ("kiosk.service.console.app", __name__, "uvicorn.error", "asyncio")


class FloodFilter(logging.Filter):
    """Lets the first record of each kind (logger + message template) through per interval and
    counts the rest: a connection flood or a token-guessing run writes a line a minute, not MBs."""

    MAX_KINDS = 256

    def __init__(self, interval_s: float = FLOOD_INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind, now = (record.name, str(record.msg)), time.monotonic()
        with self._lock:
            last, suppressed = self._kinds.get(kind, (-math.inf, 0))
            if now - last < self.interval_s:
                self._kinds[kind] = (last, suppressed + 1)
                return False
            if len(self._kinds) >= self.MAX_KINDS:
                self._kinds.clear()
            self._kinds[kind] = (now, 0)
        if suppressed:
            record.msg = (
                f"{record.msg} [{suppressed} more like this in the last {now - last:.0f} s]"
            )
        return True


def quiet_floods(interval_s: float = FLOOD_INTERVAL_S) -> Callable[[], None]:
    """Attach one FloodFilter to the console's, uvicorn's and asyncio's loggers; returns the undo."""
    flood = FloodFilter(interval_s)
    loggers = [logging.getLogger(name) for name in FLOOD_LOGGERS]
    for logger in loggers:
        logger.addFilter(flood)

    def undo() -> None:
        for logger in loggers:
            logger.removeFilter(flood)

    return undo


def connection_cap(wanted: int) -> int:
    """At most a quarter of the process's file-descriptor limit goes to console connections:
    under a burst, connections being accepted and being closed hold descriptors too."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted <= soft // 4:
        return wanted
    cap = max(4, soft // 4)
    log.warning(
        "console.max_connections = %d lowered to %d: the process may open only %d files",
        wanted,
        cap,
        soft,
    )
    return cap


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for every request and a cap on connections.

    A connection must deliver a complete request (headers and body) within `idle_timeout_s` of
    being opened or of its previous response, else it is closed: this covers connections that
    never send anything and slow-header/slow-body senders, which uvicorn's keep-alive timer does
    not. While a connection waits like that it is "idle"; when more than `max_connections` are
    open, the oldest idle one is closed (or the new one, if none is idle), so a flood cannot take
    the file descriptors the camera and the store need, and a new /health request still gets in.
    """

    def __init__(
        self, *args: Any, idle_timeout_s: float, max_connections: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.idle_timeout_s, self.max_connections = idle_timeout_s, max_connections
        self.opened = time.monotonic()
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_after: object = None  # the cycle that was current when the deadline was set

    @property
    def idle(self) -> bool:
        return self._deadline is not None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()
        if len(self.connections) > self.max_connections:
            self._shed()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.idle and self.cycle is not self._waiting_after and not self.cycle.more_body:
            self._disarm()  # a complete request arrived: the app's turn now

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._arm()  # (a pipelined request may already have started a new cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._waiting_after = self.cycle
        self._deadline = self.loop.call_later(self.idle_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("closed a console connection idle for %g s", self.idle_timeout_s)
            self._close()

    def _shed(self) -> None:
        idle = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol) and c is not self and c.idle
        ]
        victim = min(idle, key=lambda c: c.opened) if idle else self
        log.warning(
            "more than %d console connections open: closed the %s",
            self.max_connections,
            "oldest idle one" if idle else "new one (all others busy)",
        )
        victim._close()

    def _close(self) -> None:
        """Close now and stop counting this connection (its descriptor goes a moment later)."""
        self._disarm()
        self.transport.close()
        self.connections.discard(self)


class ConsoleServer(uvicorn.Server):
    """uvicorn.Server whose floods of identical log lines are collapsed while it serves, and
    whose open MJPEG streams end as soon as it is told to stop: uvicorn waits for running
    responses (then cancels them with an ERROR traceback), and a preview never ends by itself."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        undo = quiet_floods()
        try:
            await super().serve(sockets)
        finally:
            undo()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.end_streams()
        super().handle_exit(sig, frame)

    def end_streams(self) -> None:
        closing = getattr(self.config.app.state, "closing", None)
        if closing is not None:
            closing.set()


def uvicorn_server(app: Starlette) -> ConsoleServer:
    """uvicorn with the limits of the app's `[console]` settings (`app.state.console`).

    Our own logging: no uvicorn access log, it would print /login?token=... query strings."""
    console: ConsoleConfig = getattr(app.state, "console", ConsoleConfig())
    cap = connection_cap(console.max_connections)
    protocol = functools.partial(
        GuardedH11Protocol, idle_timeout_s=console.idle_timeout_s, max_connections=cap
    )
    config = uvicorn.Config(
        app,
        http=protocol,  # type: ignore[arg-type]
        ws="none",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
        lifespan="off",
        timeout_keep_alive=math.ceil(console.idle_timeout_s),
        limit_concurrency=cap + 1,  # (uvicorn counts the connection asking; the cap sheds first)
        # asyncio accepts up to `backlog` connections per wake-up before any reaches the cap:
        # uvicorn's 2048 would run a 128-file process out of descriptors in one burst.
        backlog=max(4, cap // 2),
        h11_max_incomplete_event_size=console.max_header_bytes,
        # HTTPS for off-loopback operators (the session cookie is then Secure).
        ssl_certfile=console.ssl_certfile or None,
        ssl_keyfile=console.ssl_keyfile or None,
    )
    return ConsoleServer(config)


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
        scheme = "https" if getattr(app.state, "console", ConsoleConfig()).ssl_certfile else "http"
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"
        self.server = uvicorn_server(app)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.stop()
                raise RuntimeError("the console server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.end_streams()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
