"""``/metrics``: the collector's health in Prometheus' exposition format.

Read at scrape time from the live parts (the supervisor's ``stats_fields()``, the
sink's :class:`~collector.sink.counters.SinkStats`, the accounts' rows), never
through the sink: delivery health is on ``/metrics`` while InfluxDB is down.

Conventions ``promtool check metrics`` holds us to: counters (``_total``) only for
what only grows, gauges for states and sizes, base units (``_seconds``,
``_bytes``), a histogram for write durations, and a HELP text that says what each
is. :data:`FIELDS` maps every ``collector_stats`` field to its metric (or to None:
shown another way); a field missing from it fails a test, not a scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from collector import __version__
from collector.points import schema
from collector.sink.counters import SinkStats
from collector.supervisor import account_state as account_status

PREFIX: Final = "gate_collector_"


@dataclass(frozen=True)
class Family:
    """How one ``collector_stats`` field is shown: name (no prefix, no ``_total``), kind, HELP."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str


def _counter(name: str, text: str) -> Family:
    return Family(name, "counter", text)


def _gauge(name: str, text: str) -> Family:
    return Family(name, "gauge", text)


# Every collector_stats field: its metric, or None when /metrics shows it otherwise
# (write_time_ms: the write-duration histogram; accounts_*: gate_collector_accounts{state}).
FIELDS: Final[Mapping[str, Family | None]] = {
    schema.STAT_SESSIONS_TOTAL: _gauge(
        "sessions", "WebSocket sessions this shard holds now (one per owned account with a key)."
    ),
    schema.STAT_SESSIONS_CONNECTED: _gauge(
        "sessions_connected", "Sessions whose WebSocket is up with both channels subscribed."
    ),
    schema.STAT_SESSIONS_OVER_CAPACITY: _gauge(
        "accounts_over_capacity",
        "Owned accounts without a session: past gate.max_connections_per_ip x addresses.",
    ),
    schema.STAT_FRAMES_RECEIVED: _counter(
        "frames_received", "WebSocket frames received: updates, pongs, acks and errors."
    ),
    schema.STAT_UPDATES_RECEIVED: _counter(
        "updates_received", "Frames carrying account data (pushes); pongs and acks excluded."
    ),
    schema.STAT_FRAMES_INVALID: _counter("frames_invalid", "Frames that could not be parsed."),
    schema.STAT_FRAMES_REJECTED: _counter(
        "frames_rejected", "Updates refused: they named another account than the session's."
    ),
    schema.STAT_POINTS_OVER_CURRENCY_CAP: _counter(
        "points_over_currency_cap",
        "Points of new currencies dropped past gate.max_currencies_per_account.",
    ),
    schema.STAT_FIELDS_INVALID: _counter(
        "fields_invalid", "Field values dropped because they were not numbers."
    ),
    schema.STAT_GATE_ERRORS: _counter("gate_errors", "Error frames Gate sent on the WebSocket."),
    schema.STAT_GATE_UP: _gauge(
        "gate_up",
        "1 when Gate's broker API answered the last discovery of sub-accounts "
        "(every accounts.refresh_interval), 0 when it failed.",
    ),
    schema.STAT_DISCOVERY_ERRORS: _counter(
        "discovery_errors", "Discoveries of sub-accounts that failed (retried at the next refresh)."
    ),
    schema.STAT_RECONNECTS: _counter("reconnects", "WebSocket sessions opened again after a loss."),
    schema.STAT_GAPS: _counter(
        "gaps", "Sequence gaps seen (updates Gate sent that never arrived); each wrote a gap point."
    ),
    schema.STAT_KEY_REPLACEMENTS: _counter(
        "key_replacements", "Sub-account keys replaced after Gate refused them."
    ),
    schema.STAT_KEY_STORE_WRITE_ERRORS: _counter(
        "key_store_write_errors", "Failed writes of the key store file (the key is kept in memory)."
    ),
    schema.STAT_KEY_ROTATIONS: _counter("key_rotations", "Sub-account keys rotated by age."),
    schema.STAT_KEY_ERRORS: _counter("key_errors", "Failed key API calls (retried)."),
    schema.STAT_KEY_CONFIG_REFUSALS: _counter(
        "key_config_refusals", "Key creations Gate refused for IP or permission settings."
    ),
    schema.STAT_KEY_ROTATIONS_BREAK_BEFORE_MAKE: _counter(
        "key_rotations_break_before_make",
        "Rotations at gate.max_connections_per_ip: the old session closed before the new one.",
    ),
    schema.STAT_REFUSALS_UNEXPLAINED: _counter(
        "subscribe_refusals_unexplained",
        "Subscriptions Gate refused with code 1 or 2 and no label (retried, loud after a few).",
    ),
    schema.STAT_VALUES_NOT_APPLICABLE: _counter(
        "values_not_applicable",
        "Zeros Gate sends for fields that do not apply in the account's mode: not written.",
    ),
    schema.STAT_VALUES_MODE_UNKNOWN: _counter(
        "values_mode_unknown",
        "Zeros of mode-dependent fields held back because the account's mode was not known yet.",
    ),
    schema.STAT_WS_RATES_WITHHELD: _counter(
        "ws_rates_withheld",
        "Pushed margin rates not written while gate.ws_rate_unit = auto had not decided yet.",
    ),
    schema.STAT_WS_RATE_DIVISOR: _gauge(
        "ws_rate_divisor",
        "What pushed margin rates are divided by: 1 (ratio), 100 (percent), 0 (not decided).",
    ),
    schema.STAT_HANDSHAKE_REFUSALS: _counter(
        "handshake_refusals",
        "WebSocket handshakes refused with an HTTP status (429/503 wait out Retry-After).",
    ),
    schema.STAT_HANDSHAKE_REFUSALS_AUTH: _counter(
        "handshake_refusals_auth", "Handshakes refused with 401 or 403 (of handshake_refusals)."
    ),
    schema.STAT_SESSION_CRASHES: _counter(
        "session_crashes",
        "Failures one account's session, upkeep or rotation contained (logged, retried).",
    ),
    schema.STAT_SNAPSHOT_CRASHES: _counter(
        "snapshot_crashes", "Failures one snapshot contained (logged, retried)."
    ),
    schema.STAT_POINTS_WRITTEN: _counter("points_written", "Points InfluxDB accepted."),
    schema.STAT_POINTS_DROPPED: _counter(
        "points_dropped", "Points lost: memory and spool full, a disk error, a corrupt spool file."
    ),
    schema.STAT_POINTS_REJECTED: _counter(
        "points_rejected", "Points InfluxDB refused for good (bad lines, type conflicts): lost."
    ),
    schema.STAT_WRITE_ERRORS: _counter(
        "influx_write_errors",
        "Write attempts InfluxDB did not take (no answer, 5xx, 429), retried.",
    ),
    schema.STAT_WRITE_TIME_MS: None,
    schema.STAT_BUFFER_SIZE: _gauge("buffer_points", "Points held in memory, not yet written."),
    schema.STAT_SPOOL_BYTES: _gauge(
        "spool_bytes", "Bytes in the on-disk spool, waiting for InfluxDB to take them."
    ),
    schema.STAT_SNAPSHOTS: _counter("snapshots", "REST snapshots of accounts taken."),
    schema.STAT_SNAPSHOT_FAILURES: _counter("snapshot_failures", "REST snapshots that failed."),
    schema.STAT_SNAPSHOT_FIELDS_INVALID: _counter(
        "snapshot_fields_invalid", "Snapshot field values dropped because they were not numbers."
    ),
    schema.STAT_ACCOUNTS_ACTIVE: None,
    schema.STAT_ACCOUNTS_REFUSED: None,
    schema.STAT_ACCOUNTS_FORBIDDEN: None,
    schema.STAT_ACCOUNTS_NOT_UNIFIED: None,
    schema.STAT_ACCOUNTS_KEYLESS: None,
}

Sample = Callable[[], Mapping[str, float | int]]
Rows = Callable[[], list[dict[str, object]]]


def account_families(rows: Iterable[Mapping[str, object]], stale_after: float) -> Iterator[Metric]:
    """Owned accounts by state, and how many have had no data for ``stale_after`` seconds."""
    by_state = dict.fromkeys(account_status.STATES, 0)
    stale = 0
    for row in rows:
        state = str(row.get("state"))
        by_state[state] = by_state.get(state, 0) + 1
        stale += state == account_status.ACTIVE and _freshest(row) > stale_after
    family = GaugeMetricFamily(
        PREFIX + "accounts",
        "Owned accounts by state (active, connecting, refused, forbidden, not_unified, "
        "keyless, over_capacity).",
        labels=["state"],
    )
    for state, count in by_state.items():
        family.add_metric([state], count)
    yield family
    yield GaugeMetricFamily(
        PREFIX + "accounts_stale",
        f"Active accounts with no data (push or snapshot) for over {stale_after:g} seconds.",
        value=stale,
    )


def _freshest(row: Mapping[str, object]) -> float:
    """Seconds since an account's newest data, push or snapshot (inf: none yet)."""
    ages = [row.get("last_data_age"), row.get("last_snapshot_age")]
    return min((float(a) for a in ages if isinstance(a, int | float)), default=float("inf"))


def delivery_families(stats: SinkStats) -> Iterator[Metric]:
    """The sink's delivery health beyond the collector_stats fields."""
    histogram = HistogramMetricFamily(
        PREFIX + "influx_write_duration_seconds",
        "Duration of each write attempt to InfluxDB, answered or not.",
    )
    buckets = [(_bound(bound), count) for bound, count in stats.write_seconds.cumulative()]
    histogram.add_metric([], buckets, sum_value=stats.write_seconds.total)
    yield histogram
    yield GaugeMetricFamily(
        PREFIX + "influx_up",
        "1 when InfluxDB took the last write attempt (written or refused for good), 0 when "
        "it did not answer or asked for a retry (also 0 before the first write).",
        value=int(stats.influx_up),
    )
    yield GaugeMetricFamily(
        PREFIX + "influx_last_success_timestamp_seconds",
        "Unix time InfluxDB last took a write (0: not since start).",
        value=stats.last_success_time,
    )
    yield GaugeMetricFamily(
        PREFIX + "oldest_unsent_point_age_seconds",
        "Seconds the oldest point not yet written (memory or spool) has waited; 0 when none.",
        value=round(stats.oldest_unsent_seconds, 3),
    )
    yield GaugeMetricFamily(
        PREFIX + "spool_points", "Points in the on-disk spool.", value=stats.spool_points
    )


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class StatsCollector(Collector):
    """A prometheus-client collector reading the live parts at each scrape."""

    def __init__(
        self,
        stats: Sample,
        rows: Rows,
        keys: Callable[[], Mapping[str, int]],
        shard: str,
        *,
        sink: Callable[[], SinkStats] | None = None,
        stale_after: float = 900.0,
        ready: Callable[[], bool] = lambda: False,
    ) -> None:
        self._stats = stats
        self._rows = rows
        self._keys = keys
        self._shard = shard
        self._sink = sink
        self._stale_after = stale_after
        self._ready = ready

    def collect(self) -> Iterator[Metric]:
        """The metric families of one scrape."""
        for name, value in sorted(self._stats().items()):
            family = FIELDS.get(name)
            if family is None:
                continue
            kind = GaugeMetricFamily if family.kind == "gauge" else CounterMetricFamily
            yield kind(PREFIX + family.name, family.help, value=value)
        if self._sink is not None:
            yield from delivery_families(self._sink())
        yield from account_families(self._rows(), self._stale_after)
        keys = GaugeMetricFamily(
            PREFIX + "keys", "Sub-account keys in the key store, by state.", labels=["state"]
        )
        for state, count in sorted(self._keys().items()):
            keys.add_metric([state], count)
        yield keys
        yield GaugeMetricFamily(
            PREFIX + "ready",
            "1 once discovery is done and every session has settled (/readyz answers 200).",
            value=int(self._ready()),
        )
        info = GaugeMetricFamily(
            PREFIX + "build_info",
            "Always 1; the labels carry the collector's version and shard.",
            labels=["version", "shard"],
        )
        info.add_metric([__version__, self._shard], 1)
        yield info


def registry_for(collector: StatsCollector) -> CollectorRegistry:
    """Our families and the process' own (``process_*``: CPU, memory, file descriptors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text a scrape returns."""
    return generate_latest(registry)
