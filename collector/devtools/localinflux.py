"""A throw-away InfluxDB 1.x (Debian's ``influxd``) in a directory of its own.

Used by the demo and by the tests: data under ``root``, HTTP on a free loopback
port, no reporting, no monitor database.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

STARTUP_SECONDS = 30.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code in (200, 204):
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {STARTUP_SECONDS}s: {log.read_text()[-2000:]}")


@dataclass
class InfluxServer:
    """An ``influxd`` (1.x) in its own directory; stop() and start() keep the data."""

    root: Path
    port: int
    max_body_size: int = 25_000_000
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        config = self.root / "influxdb.conf"
        config.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{self.root}/meta"
[data]
  dir = "{self.root}/data"
  wal-dir = "{self.root}/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  max-body-size = {self.max_body_size}
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
"""
        )
        return config

    def start(self) -> None:
        """Start and wait for ``/ping``."""
        log = self.root / "influxd.log"
        with log.open("ab") as out:
            # A session of its own: a Ctrl-C at the terminal (SIGINT to the foreground
            # process group) stops the demo in order, which then stops this server.
            self.process = subprocess.Popen(
                ["influxd", "-config", str(self._config())],
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        wait_ready(f"{self.url}/ping", self.process, log)

    def stop(self) -> None:
        """Stop (data stays on disk)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def query(self, q: str, db: str | None = None) -> dict[str, object]:
        """Run InfluxQL; raise on an error answer."""
        params = {"q": q, "epoch": "ms"}
        if db:
            params["db"] = db
        response = httpx.post(f"{self.url}/query", params=params, timeout=30)
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE name``."""
        self.query(f'CREATE DATABASE "{name}"')


@contextlib.contextmanager
def influx_server(root: Path, max_body_size: int = 25_000_000) -> Iterator[InfluxServer]:
    """A running InfluxDB, stopped on exit."""
    if shutil.which("influxd") is None:
        raise RuntimeError("influxd is missing: `apt-get install influxdb` (make does it)")
    root.mkdir(parents=True, exist_ok=True)
    server = InfluxServer(root, free_port(), max_body_size)
    server.start()
    try:
        yield server
    finally:
        server.stop()
