"""Shared by the resilience tests: a WebSocket server that refuses handshakes, the daemon."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketRequest, serve_websocket

from collector.app.commands import write_credentials
from collector.gate.signing import ApiCredentials
from collector.keys import generate_master_key


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
class DaemonProcess:
    """``gate-collector run`` as a subprocess: its config, credentials and log in ``root``.

    End it with :meth:`stop` (SIGTERM) or :meth:`kill` (SIGKILL); the ``daemons``
    fixture ends whatever a test left running, whatever the outcome.
    """

    root: Path
    rest_url: str
    ws_url: str
    broker: ApiCredentials
    influx_url: str
    database: str
    accounts: str = ""  # more lines of the [accounts] section
    influx: str = ""  # more lines of the [influx] section
    master_key: str = field(default_factory=generate_master_key)
    process: trio.Process | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.root / "collector.log"

    @property
    def config(self) -> Path:
        return self.root / "collector.toml"

    def write_config(self, influx_url: str | None = None) -> None:
        """The config file (a SIGHUP re-reads it)."""
        self.config.write_text(
            f'[gate]\nrest_url = "{self.rest_url}"\nws_url = "{self.ws_url}"\n'
            f"[accounts]\n{self.accounts}\n"
            f'[state]\ndir = "{self.root}/state"\n'
            f'[influx]\nurl = "{influx_url or self.influx_url}"\ndatabase = "{self.database}"\n'
            f"{self.influx}\n"
        )

    async def start(self) -> None:
        if not self.config.exists():
            self.write_config()
        write_credentials(self.root / "creds", self.broker)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
        env.update(
            CREDENTIALS_DIRECTORY=str(self.root / "creds"),
            GATE_COLLECTOR_MASTER_KEY=self.master_key,
        )
        command = [sys.executable, "-m", "collector.app.cli", "--log-level", "debug", "run"]
        with self.log.open("ab") as out:
            self.process = await trio.lowlevel.open_process(
                [*command, "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.starts += 1

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def kill(self) -> None:
        """kill -9, and reap it."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            with trio.fail_after(15):
                await self.process.wait()

    def reap(self) -> None:
        """kill -9 from outside trio (a fixture's teardown, pass or fail)."""
        if self.process is None:
            return
        popen = self.process._proc  # trio's own checks need a running trio loop
        if popen.poll() is None:
            popen.kill()
            popen.wait(timeout=15)

    def hangup(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    async def stop(self) -> int:
        """SIGTERM; its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            return await self.process.wait()

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines of event ``name``, every run."""
        found = []
        for line in self.log.read_text().splitlines():
            if f'"event": "{name}"' in line:
                found.append(json.loads(line))
        return found


@contextlib.contextmanager
def killed_at_end() -> Iterator[list[DaemonProcess]]:
    """A list for the daemons a test starts: every one is killed at the end, pass or fail
    (a test's fixture wraps it)."""
    started: list[DaemonProcess] = []
    try:
        yield started
    finally:
        for daemon in started:
            daemon.reap()


async def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` every 50 ms; fail naming ``what`` after ``seconds``."""
    try:
        with trio.fail_after(seconds):
            while not condition():
                await trio.sleep(0.05)
    except trio.TooSlowError:
        raise AssertionError(f"not within {seconds} s: {what}") from None


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
