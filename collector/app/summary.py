"""One ``summary`` log line a minute: sessions by state, rates, backlog.

Without it the log says ``session_connected`` once per account and then nothing:
an operator cannot tell a quiet collector from a stuck one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

import trio

from collector.base.logging import get_logger
from collector.points import schema

log = get_logger(__name__)

SUMMARY_INTERVAL: Final = 60.0


class _Sessions(Protocol):
    def stats_fields(self) -> dict[str, float | int]: ...


class _SinkStats(Protocol):
    points_written: int


class _Sink(Protocol):
    @property
    def stats(self) -> _SinkStats: ...

    @property
    def buffered_points(self) -> int: ...


class _Spool(Protocol):
    points: int


@dataclass(frozen=True)
class Totals:
    """Counters read at one moment."""

    at: float
    updates: int
    points: int


def summary_fields(
    before: Totals, now: Totals, sessions: dict[str, float | int], backlog: int
) -> dict[str, float | int]:
    """The fields of one summary line (pure)."""
    seconds = max(now.at - before.at, 1e-9)
    total = int(sessions.get("sessions_total", 0))
    connected = int(sessions.get("sessions_connected", 0))
    return {
        "sessions_connected": connected,
        "sessions_connecting": total - connected,
        "sessions_over_capacity": int(sessions.get("sessions_over_capacity", 0)),
        "updates_per_s": round((now.updates - before.updates) / seconds, 1),
        "points_per_s": round((now.points - before.points) / seconds, 1),
        "backlog_points": backlog,
    }


class Summary:
    """Logs :func:`summary_fields` every ``interval`` seconds."""

    def __init__(
        self, sessions: _Sessions, sink: _Sink, spool: _Spool | None, interval: float
    ) -> None:
        self._sessions = sessions
        self._sink = sink
        self._spool = spool
        self._interval = interval

    def _totals(self, fields: dict[str, float | int]) -> Totals:
        written = self._sink.stats.points_written
        # updates only: pongs and acks are frames too, and would make an idle broker look busy
        updates = int(fields.get(schema.STAT_UPDATES_RECEIVED, 0))
        return Totals(trio.current_time(), updates, written)

    async def run(self) -> None:
        """Log a line every interval until cancelled."""
        before = self._totals(self._sessions.stats_fields())
        while True:
            await trio.sleep(self._interval)
            fields = self._sessions.stats_fields()
            now = self._totals(fields)
            backlog = self._sink.buffered_points + (self._spool.points if self._spool else 0)
            log.info("summary", **summary_fields(before, now, fields, backlog))
            before = now
