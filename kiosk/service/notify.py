"""systemd's sd_notify protocol in a few lines of `socket` (no libsystemd binding needed).

systemd passes `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace) and, with
`WatchdogSec=`, `WATCHDOG_USEC`. The service loop itself sends `WATCHDOG=1`, so a loop that hangs
stops the pings and systemd restarts the process. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = environ.get("WATCHDOG_USEC", "")
        # Ping at half the timeout, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval_s = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str) -> None:
        """One datagram `KEY=value` per line; a failed send is logged, never raised."""
        if not self.address:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(message, self.address)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status)

    def watchdog(self) -> None:
        self.send(WATCHDOG="1")

    def status(self, text: str) -> None:
        self.send(STATUS=text.replace("\n", " "))

    def stopping(self) -> None:
        self.send(STOPPING="1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
