"""sd_notify without a C dependency, and the collector's own counters.

``Notifier`` speaks systemd's notify protocol (a datagram to ``$NOTIFY_SOCKET``,
``@`` meaning the abstract namespace); without the variable it does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Final

from collector.base.logging import get_logger

log = get_logger(__name__)

_MICROSECONDS: Final = 1_000_000


class Notifier:
    """Sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``EXTEND_TIMEOUT_USEC=...``,
    ``STOPPING=1`` to systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_interval = _watchdog_interval(env)
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @property
    def enabled(self) -> bool:
        """True under systemd (``NOTIFY_SOCKET`` set)."""
        return self._socket is not None

    def notify(self, *assignments: str) -> None:
        """Send ``KEY=value`` lines; errors are logged, never raised."""
        if self._socket is None:
            return
        try:
            self._socket.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=repr(exc))

    def ready(self, status: str) -> None:
        """``READY=1`` with a status line."""
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """``STATUS=...``."""
        self.notify(f"STATUS={status}")

    def extend_timeout(self, seconds: float, status: str) -> None:
        """``EXTEND_TIMEOUT_USEC``: starting takes longer (provisioning keys), do not kill it."""
        self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * _MICROSECONDS)}", f"STATUS={status}")

    def watchdog(self) -> None:
        """``WATCHDOG=1``: the main loop is alive."""
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        """``STOPPING=1``."""
        self.notify("STOPPING=1", "STATUS=stopping: flushing to InfluxDB")

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, when the watchdog is for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / _MICROSECONDS / 2
