"""The sink: records in from a trio channel, batches out to InfluxDB (the thin I/O loop).

What comes in is a :data:`~collector.points.lineproto.Bundle` per channel item: a
sequence of records, each either a line the hot path already wrote
(:mod:`collector.points.direct`, for the sessions' pushes) or a
:class:`~collector.points.lineproto.Point` (gap points, snapshots, stats, totals),
which is encoded here. Either way one record is one point to InfluxDB.

The decisions live elsewhere: :mod:`~collector.sink.batcher` cuts batches and
bounds memory, :mod:`~collector.sink.policy` says what an answer means,
:mod:`~collector.sink.spool` keeps batches on disk, :mod:`~collector.sink.request`
addresses the write. The moving parts are :mod:`~collector.sink.backlog` (memory
and its hand-off to the spool) and :mod:`~collector.sink.delivery` (the write
loop); this module takes points in and wires them together:

* spooled batches are sent first, as stored (the gzip body straight from disk);
* past ``buffer_limit`` points in memory, the oldest batches go to the spool;
* while InfluxDB is not taking writes, everything buffered (the batch being
  retried too) reaches the spool within ``spool_after`` seconds, so a SIGKILL
  loses at most that much;
* spool disk I/O runs in a worker thread, one call at a time;
* when the channel closes (or on cancellation) what is buffered is written
  within ``shutdown_timeout`` and the rest is spooled, within ``shutdown_timeout``
  again (a hung disk does not hold the exit).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Final

import httpx
import trio

from collector.config import InfluxSettings
from collector.points.lineproto import Bundle, Encoder
from collector.sink.backlog import Backlog
from collector.sink.batcher import Batcher
from collector.sink.counters import Lag, SinkStats
from collector.sink.delivery import Delivery
from collector.sink.policy import BASE_BACKOFF, MAX_BACKOFF
from collector.sink.spool import Spool

__all__ = ["Bundle", "Sink", "SinkStats"]

# While bundles keep coming, they are taken this often (seconds); far below the
# flush interval, and the channel (10,000 bundles) holds what arrives meanwhile.
INTAKE_PAUSE: Final = 0.02


class Sink:
    """Writes bundles of points from a channel to InfluxDB, never losing a good one silently."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: InfluxSettings,
        spool: Spool | None,
        *,
        shutdown_timeout: float = 10.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        backoff: tuple[float, float] = (BASE_BACKOFF, MAX_BACKOFF),
        spool_in_thread: bool = True,
        intake_pause: float = INTAKE_PAUSE,
    ) -> None:
        self._shutdown_timeout = shutdown_timeout
        self._intake_pause = intake_pause
        self._rng = rng or random.Random()
        self._encoder = Encoder()
        self._stats = SinkStats()
        self._clock = clock
        self._lag = Lag()  # what was spooled before a restart waits from now on
        self._lag.take(spool.points if spool is not None else 0, clock())
        batcher = Batcher(settings.batch_size, settings.buffer_limit)
        # spool_in_thread is False only for tests on trio's mock clock, which would
        # jump while a thread works.
        self._backlog = Backlog(batcher, spool, self._stats, in_thread=spool_in_thread)
        self._delivery = Delivery(
            http, settings, self._backlog, self._stats, rng=self._rng, clock=clock, backoff=backoff
        )
        self._tick = trio.CancelScope()  # the ticker's wait (a SIGHUP cuts it short)

    @property
    def stats(self) -> SinkStats:
        """The counters, with the derived ones brought up to date."""
        stats = self._stats
        spool = self._backlog.spool
        spool_drops = spool.drops() if spool is not None else Counter[str]()
        stats.points_dropped = stats.dropped_by_reason.total() + spool_drops.total()
        stats.buffer_size = self.buffered_points
        stats.spool_bytes = spool.bytes if spool is not None else 0
        stats.spool_points = spool.points if spool is not None else 0
        settled = stats.points_written + stats.points_rejected + stats.points_dropped
        stats.oldest_unsent_seconds = self._lag.oldest_age(settled, self._clock())
        return stats

    def drops(self) -> Counter[str]:
        """Points dropped so far, by reason (memory and spool together)."""
        return self._backlog.drops()

    def counters(self) -> dict[str, float | int]:
        """The writer's ``collector_stats`` fields."""
        return self.stats.fields()

    @property
    def buffered_points(self) -> int:
        """Points held in memory (pending, queued, in flight, on their way to the spool)."""
        return self._backlog.points

    async def retarget(self, settings: InfluxSettings) -> None:
        """SIGHUP: write what is buffered to the old target (within the shutdown
        timeout), then send everything after it to ``settings``' target, with its
        batching (``batch_size``, ``buffer_limit``, ``flush_interval``/``jitter``),
        ``timeout``, ``gzip`` and ``spool_after``."""
        backlog = self._backlog
        if backlog.batcher.cut():
            backlog.after_cut()
        with trio.move_on_after(self._shutdown_timeout):
            while backlog.batcher.points or backlog.inflight is not None:
                await self._delivery.settled()
        self._delivery.retarget(settings)
        backlog.batcher.batch_size = settings.batch_size
        backlog.batcher.buffer_limit = settings.buffer_limit
        self._tick.cancel()  # the next tick on the new flush_interval

    # -- intake --------------------------------------------------------------

    async def run(self, receive: trio.MemoryReceiveChannel[Bundle]) -> None:
        """Run until ``receive`` closes (or cancellation), then flush and spool."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._delivery.forever)
                nursery.start_soon(self._backlog.spill_forever)
                async with receive:
                    await self._intake(receive)
                nursery.cancel_scope.cancel()
        finally:
            await self._shutdown()

    async def _intake(self, receive: trio.MemoryReceiveChannel[Bundle]) -> None:
        """Take bundles until the channel closes: one wake-up drains all that is queued.

        While bundles keep coming, the sink takes them once per ``INTAKE_PAUSE``
        instead of being woken by each one: a wake-up per update (a trip through
        trio's run loop) cost more than the update's own work when updates arrive
        one by one. Idle, it waits for the next bundle as before.
        """
        try:
            async for bundle in receive:
                self.add(bundle)
                self._take_queued(receive)  # the rest without a schedule point per bundle
                await trio.sleep(self._intake_pause)
        finally:  # cancelled in a pause: what waits in the channel is kept too
            self._take_queued(receive)

    def _take_queued(self, receive: trio.MemoryReceiveChannel[Bundle]) -> None:
        add = self.add
        while True:
            try:
                add(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    def add(self, bundle: Bundle) -> None:
        """Encode (points) and buffer lines; cut a batch when it is full."""
        encode = self._encoder.encode
        lines = [line for line in map(encode, bundle) if line is not None]
        self._lag.take(len(lines), self._clock())
        if self._backlog.batcher.add(lines):
            self._backlog.after_cut()

    async def _ticker(self) -> None:
        backlog = self._backlog
        while True:
            settings = self._delivery.settings  # a SIGHUP may change the interval
            self._tick = trio.CancelScope()
            with self._tick:
                await trio.sleep(
                    settings.flush_interval + self._rng.uniform(0, settings.flush_jitter)
                )
            if self._delivery.outage_is_long():
                backlog.spill(backlog.batcher.drain())
            elif backlog.batcher.cut():
                backlog.after_cut()

    # -- shutdown --------------------------------------------------------------

    async def _shutdown(self) -> None:
        with trio.CancelScope(shield=True):
            self._backlog.batcher.cut()
            self._backlog.put_back()
            with trio.move_on_after(self._shutdown_timeout):
                await self._delivery.write_out()
            self._backlog.put_back()  # a write cut off by the deadline
            await self._backlog.spool_all(self._shutdown_timeout)
