"""Real time-series servers for the tests: Debian's InfluxDB 1.x and VictoriaMetrics.

Each runs from a temporary directory on free loopback ports; ``make test``
installs the packages when missing. No mock stands in for them.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
