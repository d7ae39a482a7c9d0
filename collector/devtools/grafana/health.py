"""The collector health dashboard: is each collector reporting, connected, writing."""

from __future__ import annotations

from typing import Any, Final

from collector.devtools.grafana.builder import (
    Board,
    q,
    query_variable,
    silent_mapping,
    stat,
    steps,
    target,
)
from collector.points import schema

INSTANCE: Final = f"{q(schema.TAG_INSTANCE)} =~ /^$instance$/"


def collector_health() -> Board:
    """Is the collector well: reporting at all, sessions, throughput, buffer, writes, gaps."""
    board = Board(
        "gate-collector-health",
        "Gate collector health",
        "The collector's own metrics (collector_stats) and sequence gaps.",
    )
    stats_m = q(schema.COLLECTOR_STATS)
    board.variables.append(
        query_variable(
            "instance",
            "Instance",
            f"SHOW TAG VALUES FROM {stats_m} WITH KEY = {q(schema.TAG_INSTANCE)}",
            multi=True,
            include_all=True,
        )
    )
    by_shard = f"{q(schema.TAG_INSTANCE)}, {q(schema.TAG_SHARD)}"

    def stats(expression: str, alias: str) -> dict[str, Any]:
        return target(
            f'SELECT {expression} AS "{alias}" FROM {stats_m} '
            f"WHERE {INSTANCE} AND $timeFilter GROUP BY time($__interval), {by_shard}",
            alias=f"$tag_instance $tag_shard {alias}",
        )

    board.add(
        "stat",
        "Stats points per minute (last 3 min)",
        [
            target(
                # Counted per minute with fill(0) over the whole range, averaged over 3
                # minutes: every instance seen in the range has a series, one that went
                # silent shows 0 (red) instead of vanishing from the panel, and the
                # minute just begun (a partial count) cannot turn a live one red.
                f"SELECT moving_average(count({q(schema.STAT_SESSIONS_TOTAL)}), 3) "
                f"FROM {stats_m} WHERE {INSTANCE} AND $timeFilter "
                f"GROUP BY time(1m), {by_shard} fill(0)",
                alias="$tag_instance $tag_shard",
            )
        ],
        width=8,
        height=5,
        options=stat(),
        defaults={
            "thresholds": steps((None, "red"), (1, "green")),
            "mappings": [silent_mapping()],
            "noValue": "SILENT",
        },
        description="Each collector writes collector_stats every stats interval: none in 3 "
        "minutes (red, 0) means it stopped or InfluxDB is not taking its writes; every "
        "instance seen in the time range is listed. The delivery alerts are Prometheus "
        "rules on /metrics (README, Alerting).",
    )
    board.add(
        "stat",
        "Sessions not connected",
        [
            target(
                f"SELECT last({q(schema.STAT_SESSIONS_TOTAL)}) - "
                f"last({q(schema.STAT_SESSIONS_CONNECTED)}) FROM {stats_m} "
                f"WHERE {INSTANCE} AND $timeFilter GROUP BY {by_shard}",
                alias="$tag_instance $tag_shard",
            )
        ],
        width=8,
        height=5,
        options=stat(),
        defaults={
            "thresholds": steps((None, "green"), (1, "red")),
            "mappings": [silent_mapping()],
            "noValue": "SILENT",
        },
    )
    board.add(
        "stat",
        "Spool on disk",
        [
            target(
                f"SELECT last({q(schema.STAT_SPOOL_BYTES)}) FROM {stats_m} "
                f"WHERE {INSTANCE} AND $timeFilter GROUP BY {by_shard}",
                alias="$tag_instance $tag_shard",
            )
        ],
        width=8,
        height=5,
        unit="bytes",
        options=stat(),
        defaults={
            "thresholds": steps((None, "green"), (1, "orange")),
            "mappings": [silent_mapping()],
            "noValue": "SILENT",
        },
        description="Non-zero: InfluxDB was not taking writes; batches wait on disk. Read "
        "through InfluxDB, so it shows an outage only after it: live, see /metrics "
        "(gate_collector_spool_bytes).",
    )
    board.add(
        "timeseries",
        "Sessions connected vs total",
        [
            stats(f"last({q(schema.STAT_SESSIONS_CONNECTED)})", "connected"),
            stats(f"last({q(schema.STAT_SESSIONS_TOTAL)})", "total"),
        ],
    )
    board.add(
        "timeseries",
        "Sessions over capacity",
        [stats(f"last({q(schema.STAT_SESSIONS_OVER_CAPACITY)})", "over capacity")],
        description="Accounts not connected because of the 300-per-IP limit: add a shard "
        "or gate.source_addresses.",
    )
    board.add(
        "timeseries",
        "Frames per second",
        [
            stats(
                f"non_negative_derivative(last({q(schema.STAT_FRAMES_RECEIVED)}), 1s)", "frames/s"
            ),
            stats(
                f"non_negative_derivative(last({q(schema.STAT_FRAMES_INVALID)}), 1s)", "invalid/s"
            ),
        ],
        unit="ops",
    )
    board.add(
        "timeseries",
        "Points written per second",
        [
            stats(
                f"non_negative_derivative(last({q(schema.STAT_POINTS_WRITTEN)}), 1s)", "written/s"
            ),
            stats(
                f"non_negative_derivative(last({q(schema.STAT_POINTS_REJECTED)}), 1s)", "rejected/s"
            ),
            stats(
                f"non_negative_derivative(last({q(schema.STAT_POINTS_DROPPED)}), 1s)", "dropped/s"
            ),
        ],
        unit="ops",
    )
    board.add(
        "timeseries",
        "Buffer (points in memory)",
        [stats(f"last({q(schema.STAT_BUFFER_SIZE)})", "buffer")],
        width=6,
        description="Points waiting in memory for InfluxDB.",
    )
    board.add(
        "timeseries",
        "Spool (bytes on disk)",
        [stats(f"last({q(schema.STAT_SPOOL_BYTES)})", "spool")],
        width=6,
        unit="bytes",
        description="Batches kept on disk while InfluxDB is unreachable; replayed first.",
    )
    board.add(
        "timeseries",
        "Write errors",
        [stats(f"non_negative_difference(last({q(schema.STAT_WRITE_ERRORS)}))", "errors")],
        width=6,
    )
    board.add(
        "timeseries",
        "Write latency (mean and worst)",
        [
            stats(f"mean({q(schema.STAT_WRITE_TIME_MS)})", "mean"),
            stats(f"max({q(schema.STAT_WRITE_TIME_MS)})", "max"),
        ],
        width=6,
        unit="ms",
        description="The last write's duration, sampled each stats interval: mean and max of "
        "the samples in each bucket.",
    )
    board.add(
        "timeseries",
        "Reconnects and gaps",
        [
            stats(f"non_negative_difference(last({q(schema.STAT_RECONNECTS)}))", "reconnects"),
            stats(f"non_negative_difference(last({q(schema.STAT_GAPS)}))", "gaps"),
        ],
    )
    board.add(
        "timeseries",
        "Bad input from Gate",
        [
            stats(
                f"non_negative_difference(last({q(schema.STAT_FRAMES_INVALID)}))", "invalid frames"
            ),
            stats(
                f"non_negative_difference(last({q(schema.STAT_FIELDS_INVALID)}))", "invalid fields"
            ),
            stats(
                f"non_negative_difference(last({q(schema.STAT_FRAMES_REJECTED)}))",
                "rejected frames",
            ),
            stats(f"non_negative_difference(last({q(schema.STAT_GATE_ERRORS)}))", "error frames"),
        ],
        description="Counted and logged; the good part of each update is still written. "
        "Rejected frames carry another account's u: a key paired with the wrong account.",
    )
    board.add(
        "table",
        "Reconnects and gaps per account",
        [
            target(
                f'SELECT count({q(schema.GAP_MISSED)}) AS "events", '
                f'sum({q(schema.GAP_MISSED)}) AS "updates missed" '
                f"FROM {q(schema.SEQUENCE_GAP)} WHERE $timeFilter AND {q(schema.GAP_MISSED)} >= 0 "
                f"GROUP BY {q(schema.TAG_ACCOUNT)}, {q(schema.TAG_REASON)}",
                table=True,
            )
        ],
        description="reason=reconnect: the session reconnected; reason=sequence: Gate's u skipped.",
    )
    return board
