"""What the sink holds in memory, the bound on it, and its hand-off to the spool.

* past ``buffer_limit`` points in memory, the oldest batches go to the spool
  (or, with no spool, are dropped and counted);
* spool disk I/O runs in a worker thread, one call at a time;
* whoever delivers is woken when a batch is cut or spooled (:meth:`Backlog.wait_for_work`).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import trio

from collector.base.logging import get_logger
from collector.sink.batcher import Batch, Batcher
from collector.sink.counters import SinkStats
from collector.sink.spool import REASON_BUFFER_FULL, Spool

log = get_logger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")


class Backlog:
    """The sink's batches: pending and queued (the batcher), in flight, on their way to disk."""

    def __init__(
        self, batcher: Batcher, spool: Spool | None, stats: SinkStats, *, in_thread: bool
    ) -> None:
        self.batcher = batcher
        self.spool = spool
        self.inflight: Batch | None = None
        self._to_spill: list[Batch] = []  # leaving memory for the spool, oldest first
        self._stats = stats
        # False only for tests on trio's mock clock, which would jump while a thread works.
        self._in_thread = in_thread
        self._spool_lock = trio.Lock()
        self._work = trio.Event()
        self._spill_wanted = trio.Event()

    @property
    def points(self) -> int:
        """Points held in memory (pending, queued, in flight, on their way to the spool)."""
        inflight = len(self.inflight) if self.inflight else 0
        return self.batcher.points + inflight + sum(map(len, self._to_spill))

    def outage_fields(self, settled: int = 0) -> dict[str, int]:
        """Points waiting (but ``settled`` ones), in memory and spooled, for outage lines."""
        spooled = self.spool.points if self.spool is not None else 0
        return {
            "backlog_points": self.points - settled + spooled,
            "spooled_points": spooled,
        }

    def drops(self) -> Counter[str]:
        """Points dropped so far, by reason (memory and spool together)."""
        total = Counter(self._stats.dropped_by_reason)
        if self.spool is not None:
            total.update(self.spool.drops())
        return total

    def after_cut(self) -> None:
        """A batch was cut: bound memory, and wake the deliverer."""
        held = len(self.inflight) if self.inflight else 0
        self.spill(self.batcher.overflow(held))
        self._work.set()

    def put_back(self) -> None:
        """The batch in flight (if any) goes back to the head of the queue."""
        if self.inflight is not None:
            self.batcher.put_back(self.inflight)
            self.inflight = None

    async def wait_for_work(self) -> None:
        """Sleep until a batch is cut or spooled."""
        await self._work.wait()
        self._work = trio.Event()

    # -- the spool, off the trio loop ----------------------------------------

    def spill(self, batches: list[Batch]) -> None:
        """Send batches to the spool (dropped and counted when there is none)."""
        if not batches:
            return
        if self.spool is None:
            points = sum(map(len, batches))
            self._stats.dropped_by_reason[REASON_BUFFER_FULL] += points
            log.error(
                "points_dropped",
                reason=REASON_BUFFER_FULL,
                points=points,
                hint="configure state.dir so that a spool keeps them",
            )
            return
        self._to_spill.extend(batches)
        self._spill_wanted.set()

    async def spool_call(self, fn: Callable[_P, _T], *args: _P.args, **kw: _P.kwargs) -> _T:
        """Run one spool operation, in a worker thread unless told otherwise."""
        return await self._call(functools.partial(fn, *args, **kw), abandon=False)

    async def _call(self, work: Callable[[], _T], *, abandon: bool) -> _T:
        """``work`` alone on the spool; ``abandon``: a cancel does not wait for its thread
        (only at shutdown, when nothing else touches the spool any more)."""
        async with self._spool_lock:
            if not self._in_thread:
                await trio.lowlevel.checkpoint()
                return work()
            return await trio.to_thread.run_sync(work, abandon_on_cancel=abandon)

    async def spill_forever(self) -> None:
        """Write spilled batches to the spool as they come."""
        while True:
            await self._spill_wanted.wait()
            self._spill_wanted = trio.Event()
            await self.spill_now()

    async def spill_now(self, *, abandon: bool = False) -> None:
        """Write every spilled batch to the spool, oldest first (one caller at a time:
        :meth:`spill_forever`, or :meth:`spool_all` once it has stopped)."""
        assert self.spool is not None or not self._to_spill
        while self._to_spill and self.spool is not None:
            batch = self._to_spill[0]
            await self._call(functools.partial(self.spool.append, batch), abandon=abandon)
            self._to_spill.pop(0)
            self._work.set()  # the deliverer replays the spool first

    async def spool_all(self, within: float) -> None:
        """At shutdown: everything still in memory goes to the spool, within ``within``
        seconds. A disk that hangs (a stuck NFS mount) must not hold the exit past the
        service manager's stop timeout: what has not reached the spool by then is
        logged as lost (a write abandoned mid-way is atomic: whole or absent)."""
        left = self.batcher.drain()
        if left:
            log.warning("shutdown_spooled", batches=len(left), points=sum(map(len, left)))
        self.spill(left)
        with trio.move_on_after(within):
            await self.spill_now(abandon=True)
        if self._to_spill:
            log.error(
                "shutdown_spool_timeout",
                points=sum(map(len, self._to_spill)),
                timeout_seconds=within,
                hint="the disk of state.dir did not take the spool in time: these points "
                "are lost (the one being written may still reach the spool)",
            )
