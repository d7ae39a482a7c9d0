"""``/metrics``: the counters of ``collector_stats`` in Prometheus' exposition format.

Built at scrape time from the same numbers the sink writes as ``collector_stats``
(the supervisor's ``stats_fields()`` and the sink's ``stats``), so a dashboard on
Prometheus and one on InfluxDB never disagree. Names: ``gate_collector_<field>``;
counters get Prometheus' ``_total`` suffix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector import __version__

PREFIX: Final = "gate_collector_"
# Fields that go up and down; every other field of collector_stats only grows.
GAUGES: Final = frozenset(
    {
        "sessions_total",
        "sessions_connected",
        "sessions_over_capacity",
        "buffer_size",
        "spool_bytes",
        "write_time_ms",
    }
)
HELP: Final[Mapping[str, str]] = {
    "sessions_total": "Sessions this shard holds (any state).",
    "sessions_connected": "Sessions whose WebSocket is subscribed.",
    "sessions_over_capacity": "Owned accounts without a session: over the per-IP limit.",
    "buffer_size": "Points held in memory, not yet written.",
    "spool_bytes": "Bytes in the on-disk spool, waiting for InfluxDB.",
    "write_time_ms": "Duration of the last InfluxDB write.",
    "points_written": "Points InfluxDB accepted.",
    "points_dropped": "Points lost: buffer and spool full, or unreadable spool files.",
    "points_rejected": "Points InfluxDB refused (bad lines).",
}

Sample = Callable[[], Mapping[str, float | int]]


class StatsCollector(Collector):
    """A prometheus-client collector reading the stats dicts at each scrape."""

    def __init__(
        self,
        stats: Sample,
        sessions_by_state: Callable[[], Mapping[str, int]],
        keys: Callable[[], Mapping[str, int]],
        shard: str,
    ) -> None:
        self._stats = stats
        self._sessions = sessions_by_state
        self._keys = keys
        self._shard = shard

    def collect(self) -> Iterator[Metric]:
        """The metric families of one scrape."""
        for name, value in sorted(self._stats().items()):
            text = HELP.get(name, f"collector_stats field {name}.")
            kind = GaugeMetricFamily if name in GAUGES else CounterMetricFamily
            yield kind(PREFIX + name, text, value=value)
        by_state = GaugeMetricFamily(
            PREFIX + "sessions", "Owned accounts by session state.", labels=["state"]
        )
        for state, count in sorted(self._sessions().items()):
            by_state.add_metric([state], count)
        yield by_state
        keys = GaugeMetricFamily(PREFIX + "keys", "Sub-account keys by state.", labels=["state"])
        for state, count in sorted(self._keys().items()):
            keys.add_metric([state], count)
        yield keys
        info = GaugeMetricFamily(
            PREFIX + "build_info", "The collector's version and shard.", labels=["version", "shard"]
        )
        info.add_metric([__version__, self._shard], 1)
        yield info


def exposition(collector: StatsCollector) -> bytes:
    """The text a scrape returns."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
