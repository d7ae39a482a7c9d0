"""Real servers for the tests: Debian's InfluxDB 1.x and VictoriaMetrics; and a hanging one.

Each runs from a temporary directory on free loopback ports; ``make test``
installs the packages when missing. No mock stands in for them.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trio
from trio_websocket import WebSocketRequest, serve_websocket

from collector.devtools.localinflux import InfluxServer, free_port, influx_server, wait_ready

__all__ = ["InfluxServer", "VictoriaMetrics", "free_port", "influx_server", "victoria_metrics"]


@dataclass
class VictoriaMetrics:
    """Debian's ``victoria-metrics``: it accepts InfluxDB's ``/api/v2/write``."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    flags: tuple[str, ...] = ()  # more command-line flags (say, -promscrape.config=...)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait for ``/health``."""
        binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        log = self.root / "vm.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"-storageDataPath={self.root}/data",
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    "-retentionPeriod=100y",
                    "-search.latencyOffset=0s",
                    "-search.disableCache",
                    *self.flags,
                ],
                stdout=out,
                stderr=out,
            )
        wait_ready(f"{self.url}/health", self.process, log)

    def stop(self) -> None:
        """Stop it."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None


@contextlib.contextmanager
def victoria_metrics(root: Path, *flags: str) -> Iterator[VictoriaMetrics]:
    """A running VictoriaMetrics (with more command-line ``flags``), stopped on exit."""
    root.mkdir(parents=True, exist_ok=True)
    server = VictoriaMetrics(root, free_port(), flags=flags)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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


@dataclass
class Refuser:
    """What the server answers every handshake with; it notes when each came (trio time)."""

    status: int = 429
    body: bytes | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v4/ws/unified"

    async def handler(self, request: WebSocketRequest) -> None:
        self.attempts.append(trio.current_time())
        await request.reject(self.status, extra_headers=self.headers, body=self.body)


async def start_refuser(nursery: trio.Nursery, refuser: Refuser) -> Refuser:
    """Serve ``refuser`` on a free loopback port (a real trio-websocket server)."""
    server = await nursery.start(serve_websocket, refuser.handler, "127.0.0.1", 0, None)
    refuser.port = int(server.port)
    return refuser


@dataclass
class FlakyProxy:
    """A loopback TCP proxy in front of InfluxDB: it passes bytes (``pass``), closes each
    connection at once (``down``), or accepts and never answers (``hang``). A change of
    mode cuts the connections it holds."""

    upstream_port: int
    mode: str = "pass"
    port: int = 0
    _held: set[trio.CancelScope] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(trio.serve_tcp, self._handle, 0)
        self.port = int(listeners[0].socket.getsockname()[1])

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        for scope in list(self._held):
            scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        scope = trio.CancelScope()
        self._held.add(scope)
        try:
            with scope:
                if self.mode == "hang":
                    await trio.sleep_forever()
                if self.mode == "pass":
                    await self._pipe(client)
        finally:
            self._held.discard(scope)
            await trio.aclose_forcefully(client)

    async def _pipe(self, client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        async with upstream, trio.open_nursery() as nursery:

            async def copy(source: trio.SocketStream, sink: trio.SocketStream) -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    async for chunk in source:
                        await sink.send_all(chunk)
                nursery.cancel_scope.cancel()

            nursery.start_soon(copy, client, upstream)
            nursery.start_soon(copy, upstream, client)
