"""A session's pushes: normalise, count, log, hand to the sink (one account, no socket).

Each update goes through the account's :class:`~collector.points.normalize.Normalizer`
(line text straight from the frame, ``u`` checked), is counted in the session's
stats, and its records go to the sink's channel with ``send_nowait``: no schedule
point per frame while the sink keeps up, back-pressure (``send``) when it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from collector.gate import protocol
from collector.gate.sequence import REASON_SEQUENCE
from collector.points.lineproto import Bundle
from collector.points.normalize import Normalized, Normalizer
from collector.session.state import SessionStats


class Updates:
    """Turns one account's update events into records on the sink's channel."""

    def __init__(
        self,
        normalizer: Normalizer,
        points: trio.MemorySendChannel[Bundle],
        stats: Callable[[], SessionStats],
        log: Any,  # the session's bound logger
        resync: Callable[[str], None],
    ) -> None:
        self.normalizer = normalizer
        self._points = points
        self._stats = stats  # the owner's current stats (a slot may swap them)
        self._log = log
        self._resync = resync

    async def handle(self, event: protocol.Update, now: float) -> None:
        """Normalise ``event`` (read at trio time ``now``), count and log it, send its
        records (waits only when the sink's channel is full)."""
        result = self.normalizer.normalize(event)
        stats = self._stats()
        if result.invalid_fields or result.over_cap or result.rejected is not None or result.gaps:
            self._count(event, result, stats)
        stats.last_data_at = now
        stats.updates += 1
        records = result.records()
        if records:
            stats.points += len(records)
            if stats.delivered is not None:
                stats.delivered.set()
            try:  # no extra schedule point per frame while the sink keeps up
                self._points.send_nowait(records)
            except trio.WouldBlock:
                await self._points.send(records)  # back-pressure
        if result.resync:
            self._resync("gap")

    def _count(self, event: protocol.Update, result: Normalized, stats: SessionStats) -> None:
        stats.fields_invalid += result.invalid_fields
        if result.over_cap:
            if not stats.points_over_currency_cap:  # logged once per account
                self._log.error(
                    "currency_cap_reached",
                    cap=self.normalizer.max_currencies,
                    hint="this account sends more currencies than gate.max_currencies_per_account;"
                    " new ones are dropped and counted (points_over_currency_cap)",
                )
            stats.points_over_currency_cap += result.over_cap
        if result.rejected is not None:
            stats.frames_rejected += 1
            self._log.error("frame_rejected", channel=event.channel, reason=result.rejected)
        for gap in result.gaps:
            if gap.reason == REASON_SEQUENCE:
                stats.gaps += 1
            self._log.warning(
                "sequence_gap",
                channel=gap.channel,
                reason=gap.reason,
                expected=gap.expected,
                received=gap.received,
                missed=gap.missed,
            )
