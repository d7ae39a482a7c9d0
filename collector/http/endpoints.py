"""What the endpoint answers: ``/metrics``, ``/healthz``, ``/readyz``, ``/status``.

* ``/healthz``: 200 while the trio loop answers (this handler runs on it) and the
  sink is not wedged: it made progress (wrote, refused, spooled, retried) or had
  nothing to do within ``stall_seconds``. InfluxDB being down is not unhealthy (the
  sink retries and spools; a restart would not help), a sink that stopped is.
* ``/readyz``: 200 once discovery is done and every owned account has a session;
  503 with a one-line reason before that or while accounts are over capacity.
* ``/status``: JSON for ``gate-collector top`` and people: the stats, sessions by
  state, per-second rates, per-account rows.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import orjson
import trio

from collector import __version__
from collector.http.metrics import StatsCollector, exposition
from collector.http.server import Response, bound_port, serve
from collector.logging import get_logger

log = get_logger(__name__)

RATE_INTERVAL: Final = 5.0
# Counters shown per second in /status.
RATE_FIELDS: Final = ("frames_received", "points_written", "gaps", "reconnects")
# Counters that move whenever the sink does anything with a batch.
PROGRESS_FIELDS: Final = ("points_written", "points_rejected", "points_dropped", "write_errors")


class Observable(Protocol):
    """What the endpoint reads of the supervisor (kept narrow for tests and growth)."""

    def stats_fields(self) -> dict[str, float | int]:
        """The session share of collector_stats."""

    def readiness(self) -> tuple[bool, str]:
        """(ready?, one line why)."""

    def account_rows(self) -> list[dict[str, object]]:
        """One row per owned account."""


@dataclass
class Progress:
    """Pure: has the sink moved lately? Fed samples (time, counters, backlog)."""

    stall_seconds: float
    _last: tuple[float, ...] | None = None
    _moved_at: float | None = None

    def observe(self, now: float, counters: tuple[float, ...], backlog: int) -> None:
        """Record a sample; progress is a change of counters or an empty backlog."""
        if self._moved_at is None or backlog == 0 or counters != self._last:
            self._moved_at = now
        self._last = counters

    def stalled_for(self, now: float) -> float:
        """Seconds without progress (0 when moving)."""
        return 0.0 if self._moved_at is None else now - self._moved_at

    def healthy(self, now: float) -> bool:
        """False once the sink has had work and no progress for ``stall_seconds``."""
        return self.stalled_for(now) <= self.stall_seconds


@dataclass
class Observed:
    """The running collector as the endpoint sees it."""

    supervisor: Observable
    collector_stats: Callable[[], Mapping[str, float | int]]
    keys: Callable[[], Mapping[str, int]]
    shard: str
    instance: str
    stall_seconds: float = 300.0
    # Facts about Gate the collector decided at run time (the unit of pushed rates).
    gate_facts: Callable[[], Mapping[str, object]] | None = None
    progress: Progress = field(init=False)
    rates: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.progress = Progress(self.stall_seconds)
        self._metrics = StatsCollector(
            self.collector_stats, self.sessions_by_state, self.keys, self.shard
        )

    def sessions_by_state(self) -> dict[str, int]:
        """Owned accounts counted by their state."""
        return dict(Counter(str(row["state"]) for row in self.supervisor.account_rows()))

    def sample(self, now: float) -> dict[str, float | int]:
        """Read the stats once and feed the progress tracker."""
        stats = dict(self.collector_stats())
        backlog = int(stats.get("buffer_size", 0)) + int(stats.get("spool_bytes", 0))
        self.progress.observe(now, tuple(stats.get(f, 0) for f in PROGRESS_FIELDS), backlog)
        return stats

    # -- handlers --------------------------------------------------------------------

    def handle(self, method: str, target: str) -> Response:
        """Route one GET."""
        path = target.partition("?")[0]
        route = self._routes().get(path)
        if route is None:
            return Response(404, b"not found: try /metrics /healthz /readyz /status\n")
        return route()

    def _routes(self) -> dict[str, Callable[[], Response]]:
        return {
            "/metrics": self.metrics,
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/status": self.status,
        }

    def metrics(self) -> Response:
        """Prometheus exposition of collector_stats."""
        return Response(200, exposition(self._metrics), "text/plain; version=0.0.4; charset=utf-8")

    def healthz(self) -> Response:
        """The loop answers and the sink is not wedged."""
        now = trio.current_time()
        self.sample(now)
        if not self.progress.healthy(now):
            stalled = round(self.progress.stalled_for(now))
            reason = f"sink wedged: no progress for {stalled} s with a backlog\n"
            return Response(503, reason.encode())
        return Response(200, b"ok\n")

    def readyz(self) -> Response:
        """Discovery done, every owned account has a session."""
        ready, reason = self.supervisor.readiness()
        return Response(200 if ready else 503, f"{reason}\n".encode())

    def status(self) -> Response:
        """The JSON document ``gate-collector top`` shows."""
        stats = self.sample(trio.current_time())
        ready, reason = self.supervisor.readiness()
        accounts = self.supervisor.account_rows()
        document = {
            "version": __version__,
            "instance": self.instance,
            "shard": self.shard,
            "time": time.time(),
            "ready": ready,
            "reason": reason,
            "stats": stats,
            "sessions": dict(Counter(str(row["state"]) for row in accounts)),
            "rates": self.rates,
            "keys": dict(self.keys()),
            "gate": dict(self.gate_facts()) if self.gate_facts is not None else {},
            "accounts": accounts,
        }
        return Response(200, orjson.dumps(document), "application/json")

    async def measure_rates(self) -> None:
        """Every RATE_INTERVAL: per-second rates of the main counters."""
        before = dict(self.collector_stats())
        while True:
            await trio.sleep(RATE_INTERVAL)
            after = self.sample(trio.current_time())
            self.rates = {f"{name}_per_s": _per_second(before, after, name) for name in RATE_FIELDS}
            before = after


def _per_second(
    before: Mapping[str, float | int], after: Mapping[str, float | int], name: str
) -> float:
    return round((after.get(name, 0) - before.get(name, 0)) / RATE_INTERVAL, 2)


async def serve_endpoint(observed: Observed, listeners: list[trio.SocketListener]) -> None:
    """Serve the endpoint on bound ``listeners`` (``open_listeners``) until cancelled."""
    log.info("http_listening", port=bound_port(listeners))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(observed.measure_rates)
        nursery.start_soon(serve, observed.handle, listeners)
