"""The sink's counters (its share of ``collector_stats``) and how one batch ended."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from collector.points import schema


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
