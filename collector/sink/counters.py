"""The sink's counters (its share of ``collector_stats``) and how one batch ended.

Besides the ``collector_stats`` fields, :class:`SinkStats` keeps the delivery
health ``/metrics`` reads straight from the live sink (never through it): a
histogram of write durations, whether the last write was taken, when one last
was, and how long the oldest point not yet settled has waited (:class:`Lag`).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Final

from collector.points import schema

# Upper bounds (seconds) of the write-duration histogram: a local InfluxDB answers
# in milliseconds, a loaded one in seconds, a hung one at influx.timeout (10 s).
WRITE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Intake marks closer together than this are merged: the oldest-point age is at most
# this much too high, and an hour-long outage keeps 3,600 marks, not one per intake.
LAG_RESOLUTION: Final = 1.0


@dataclass
class Histogram:
    """Counts of observations per bucket (Prometheus' cumulative form on demand)."""

    bounds: tuple[float, ...] = WRITE_BUCKETS
    counts: list[int] = field(init=False)  # one per bound, then +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound it does not exceed (else +Inf)."""
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
        self.counts[index] += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with (+Inf, all)."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass
class Lag:
    """Pure: when the oldest point not yet settled was taken in.

    The sink is first in, first out (memory's oldest batches go to the spool, the
    spool is sent first, its oldest files are evicted first), so with points
    numbered as they come in, the oldest unsettled one is number ``settled + 1``.
    Marks are (points taken in so far, when the first of them came).
    """

    resolution: float = LAG_RESOLUTION
    taken: int = 0
    _marks: deque[list[float]] = field(default_factory=deque)

    def take(self, points: int, now: float) -> None:
        """``points`` came in at ``now``."""
        if points <= 0:
            return
        self.taken += points
        marks = self._marks
        if marks and now - marks[-1][1] < self.resolution:
            marks[-1][0] = self.taken  # merged: the mark keeps its earlier time
        else:
            marks.append([self.taken, now])

    def oldest_age(self, settled: int, now: float) -> float:
        """Seconds the oldest point not yet settled has waited (0 when none waits)."""
        marks = self._marks
        while marks and marks[0][0] <= settled:
            marks.popleft()
        return max(0.0, now - marks[0][1]) if marks else 0.0


@dataclass
class SinkStats:
    """The writer's counters (its share of ``collector_stats``)."""

    points_written: int = 0
    points_dropped: int = 0
    points_rejected: int = 0
    write_errors: int = 0
    write_time_ms: float = 0.0
    buffer_size: int = 0
    spool_bytes: int = 0
    dropped_by_reason: Counter[str] = field(default_factory=Counter)
    # CREATE DATABASE after a write's 404 (not a collector_stats field: the data contract)
    databases_created: int = 0
    # Delivery health for /metrics (not collector_stats fields):
    write_seconds: Histogram = field(default_factory=Histogram)
    influx_up: bool = False  # the last write attempt was taken (written or refused for good)
    last_success_time: float = 0.0  # wall-clock time of that (0: never)
    oldest_unsent_seconds: float = 0.0  # brought up to date by Sink.stats
    spool_points: int = 0  # brought up to date by Sink.stats

    def record_attempt(self, seconds: float, *, taken: bool, now: float) -> None:
        """One write attempt took ``seconds``; ``taken``: InfluxDB settled it (at ``now``)."""
        self.write_seconds.observe(seconds)
        self.influx_up = taken
        if taken:
            self.last_success_time = now

    def fields(self) -> dict[str, float | int]:
        """The counters as ``collector_stats`` fields."""
        return {
            schema.STAT_POINTS_WRITTEN: self.points_written,
            schema.STAT_POINTS_DROPPED: self.points_dropped,
            schema.STAT_POINTS_REJECTED: self.points_rejected,
            schema.STAT_WRITE_ERRORS: self.write_errors,
            schema.STAT_WRITE_TIME_MS: self.write_time_ms,
            schema.STAT_BUFFER_SIZE: self.buffer_size,
            schema.STAT_SPOOL_BYTES: self.spool_bytes,
        }


@dataclass(frozen=True)
class Settled:
    """How a batch ended: lines InfluxDB took and lines it refused."""

    written: int = 0
    rejected: int = 0

    def __add__(self, other: Settled) -> Settled:
        return Settled(self.written + other.written, self.rejected + other.rejected)
