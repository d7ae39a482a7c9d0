"""Shared helpers of the robustness tests (issue 21): a hanging InfluxDB, polls, queries."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import trio

from tests.servers import InfluxServer


class HangingServer:
    """A loopback TCP server that accepts every connection, reads what comes and never
    answers: an InfluxDB (or a proxy in front of it) that holds every write."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.accepted = 0

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setblocking(False)  # its bytes are left in the kernel's buffer
            self._held.append(conn)
            self.accepted += 1

    def start(self) -> None:
        """Accept in a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Close every held connection and the listener."""
        self._stopped.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._listener.close()


@contextlib.contextmanager
def hanging_server() -> Iterator[HangingServer]:
    """A :class:`HangingServer` for the length of the block."""
    server = HangingServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def wait_until(condition: Callable[[], bool], deadline: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail after ``deadline`` seconds."""
    with trio.fail_after(deadline):
        while not condition():
            await trio.sleep(0.01)


def scalar(server: InfluxServer, query: str, db: str) -> Any:
    """The first value of an InfluxQL query's first series (0 when it has none)."""
    result = server.query(query, db=db)["results"][0]  # type: ignore[index]
    series = result.get("series")
    return series[0]["values"][0][1] if series else 0
