"""What the endpoint answers: ``/metrics``, ``/healthz``, ``/readyz``, ``/status``.

* ``/healthz``: 200 while the trio loop answers (this handler runs on it) and the
  sink is not wedged: it made progress (wrote, refused, spooled, retried) or had
  nothing to do within ``stall_seconds``. InfluxDB being down is not unhealthy (the
  sink retries and spools; a restart would not help), a sink that stopped is.
* ``/readyz``: "this shard serves what it can": 200 once discovery is done and
  every session has settled (subscribed, or refused by Gate for a reason of the
  account's own); 503 with a one-line reason before that. Once ready it stays
  ready: later losses and accounts over capacity are on ``/metrics`` and in the
  alerting rules, where they do not stall a rollout or use up the disruption budget.
* ``/status``: JSON for ``gate-collector top`` and people: the stats, sessions by
  state, per-second rates, delivery (InfluxDB taking writes?), per-account rows.
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
from collector.base.logging import get_logger
from collector.sink.counters import SinkStats
from collector.telemetry.http.metrics import StatsCollector, exposition, registry_for
from collector.telemetry.http.server import Response, Server, bound_port

log = get_logger(__name__)

RATE_INTERVAL: Final = 5.0
# Counters shown per second in /status.
RATE_FIELDS: Final = ("updates_received", "frames_received", "points_written", "gaps", "reconnects")
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
    sink: Callable[[], SinkStats] | None = None  # the live sink's delivery health
    stale_after: float = 900.0  # an active account without data this long is stale
    # Facts about Gate the collector decided at run time (the unit of pushed rates).
    gate_facts: Callable[[], Mapping[str, object]] | None = None
    progress: Progress = field(init=False)
    rates: dict[str, float] = field(default_factory=dict)
    # The server answering (its refused/evicted counts), once serve_endpoint runs.
    http_server: Server | None = None
    _ready_once: bool = False

    def __post_init__(self) -> None:
        self.progress = Progress(self.stall_seconds)
        self._registry = registry_for(
            StatsCollector(
                self.collector_stats,
                self.supervisor.account_rows,
                self.keys,
                self.shard,
                sink=self.sink,
                stale_after=self.stale_after,
                ready=lambda: self.readiness()[0],
            )
        )

    def readiness(self) -> tuple[bool, str]:
        """The supervisor's answer, latched once it was yes (see the module's docstring)."""
        ready, reason = self.supervisor.readiness()
        self._ready_once = self._ready_once or ready
        return self._ready_once, reason

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
        """Prometheus exposition of the collector's health."""
        return Response(200, exposition(self._registry), "text/plain; version=0.0.4; charset=utf-8")

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
        """Discovery done, every session settled (latched)."""
        ready, reason = self.readiness()
        return Response(200 if ready else 503, f"{reason}\n".encode())

    def status(self) -> Response:
        """The JSON document ``gate-collector top`` shows."""
        stats = self.sample(trio.current_time())
        ready, reason = self.readiness()
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
            "delivery": self._delivery(),
            "gate": dict(self.gate_facts()) if self.gate_facts is not None else {},
            "accounts": accounts,
        }
        return Response(200, orjson.dumps(document), "application/json")

    def _delivery(self) -> dict[str, float | bool | None]:
        """Whether InfluxDB takes writes, since when not, how old the oldest waiting point is."""
        if self.sink is None:
            return {}
        stats = self.sink()
        last = stats.last_success_time
        return {
            "influx_up": stats.influx_up,
            "last_success_age": round(time.time() - last, 1) if last else None,
            "oldest_unsent_seconds": round(stats.oldest_unsent_seconds, 1),
        }

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
        observed.http_server = Server(observed.handle)
        nursery.start_soon(observed.http_server.serve, listeners)
