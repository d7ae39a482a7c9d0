"""The sink: records in from a trio channel, batches out to InfluxDB (the thin I/O loop).

What comes in is a :data:`~collector.points.lineproto.Bundle` per channel item: a
sequence of records, each either a line the hot path already wrote
(:mod:`collector.points.direct`, for the sessions' pushes) or a
:class:`~collector.points.lineproto.Point` (gap points, snapshots, stats, totals),
which is encoded here. Either way one record is one point to InfluxDB.

The decisions live elsewhere: :mod:`~collector.sink.batcher` cuts batches and
bounds memory, :mod:`~collector.sink.policy` says what an answer means,
:mod:`~collector.sink.spool` keeps batches on disk, :mod:`~collector.sink.request`
addresses the write. This loop only moves batches between them:

* spooled batches are sent first, as stored (the gzip body straight from disk);
* past ``buffer_limit`` points in memory, the oldest batches go to the spool;
* while InfluxDB is not taking writes, everything buffered (the batch being
  retried too) reaches the spool within ``spool_after`` seconds, so a SIGKILL
  loses at most that much;
* spool disk I/O runs in a worker thread, one call at a time;
* when the channel closes (or on cancellation) what is buffered is written
  within ``shutdown_timeout`` and the rest is spooled.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import httpx
import trio

from collector.config import InfluxSettings
from collector.logging import get_logger
from collector.points import schema
from collector.points.lineproto import Bundle, Encoder
from collector.sink import gzipbody
from collector.sink.batcher import Batch, Batcher
from collector.sink.policy import BASE_BACKOFF, MAX_BACKOFF, Action, Verdict, decide, retry_delay
from collector.sink.request import write_request
from collector.sink.spool import REASON_BUFFER_FULL, Spool

log = get_logger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")


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


@dataclass(frozen=True)
class _Settled:
    """How a batch ended: lines InfluxDB took and lines it refused."""

    written: int = 0
    rejected: int = 0

    def __add__(self, other: _Settled) -> _Settled:
        return _Settled(self.written + other.written, self.rejected + other.rejected)


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
    ) -> None:
        self._http = http
        self._settings = settings
        self._spool = spool
        self._request = write_request(settings)
        self._shutdown_timeout = shutdown_timeout
        self._rng = rng or random.Random()
        self._clock = clock
        self._backoff = backoff
        # False only for tests on trio's mock clock, which would jump while a thread works.
        self._spool_in_thread = spool_in_thread
        self._encoder = Encoder()
        self._batcher = Batcher(settings.batch_size, settings.buffer_limit)
        self._inflight: Batch | None = None
        self._to_spill: list[Batch] = []  # leaving memory for the spool, oldest first
        self._failing_since: float | None = None  # trio time of the first failure in a row
        self._spool_lock = trio.Lock()
        self._work = trio.Event()
        self._spill_wanted = trio.Event()
        self._stats = SinkStats()
        self._settled = trio.Event()  # set (and replaced) whenever a batch is settled

    @property
    def stats(self) -> SinkStats:
        """The counters, with the derived ones brought up to date."""
        stats = self._stats
        spool_drops = self._spool.dropped if self._spool is not None else Counter[str]()
        stats.points_dropped = stats.dropped_by_reason.total() + spool_drops.total()
        stats.buffer_size = self.buffered_points
        stats.spool_bytes = self._spool.bytes if self._spool is not None else 0
        return stats

    def drops(self) -> Counter[str]:
        """Points dropped so far, by reason (memory and spool together)."""
        total = Counter(self._stats.dropped_by_reason)
        if self._spool is not None:
            total.update(self._spool.dropped)
        return total

    def counters(self) -> dict[str, float | int]:
        """The writer's ``collector_stats`` fields."""
        stats = self.stats
        return {
            schema.STAT_POINTS_WRITTEN: stats.points_written,
            schema.STAT_POINTS_DROPPED: stats.points_dropped,
            schema.STAT_POINTS_REJECTED: stats.points_rejected,
            schema.STAT_WRITE_ERRORS: stats.write_errors,
            schema.STAT_WRITE_TIME_MS: stats.write_time_ms,
            schema.STAT_BUFFER_SIZE: stats.buffer_size,
            schema.STAT_SPOOL_BYTES: stats.spool_bytes,
        }

    async def retarget(self, settings: InfluxSettings) -> None:
        """SIGHUP: write what is buffered to the old target (within the shutdown
        timeout), then send everything after it to ``settings``' target."""
        if self._batcher.cut():
            self._after_cut()
        with trio.move_on_after(self._shutdown_timeout):
            while self._batcher.points or self._inflight is not None:
                await self._settled.wait()
        self._settings = settings
        self._request = write_request(settings)
        log.info("influx_target", url=self._request.url, params=self._request.params)

    def _backlog(self, settled: int = 0) -> dict[str, int]:
        """Points waiting (but ``settled`` ones), in memory and spooled, for outage lines."""
        spooled = self._spool.points if self._spool is not None else 0
        return {
            "backlog_points": self.buffered_points - settled + spooled,
            "spooled_points": spooled,
        }

    @property
    def buffered_points(self) -> int:
        """Points held in memory (pending, queued, in flight, on their way to the spool)."""
        inflight = len(self._inflight) if self._inflight else 0
        return self._batcher.points + inflight + sum(map(len, self._to_spill))

    # -- intake --------------------------------------------------------------

    async def run(self, receive: trio.MemoryReceiveChannel[Bundle]) -> None:
        """Run until ``receive`` closes (or cancellation), then flush and spool."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._deliver_forever)
                nursery.start_soon(self._spill_forever)
                async with receive:
                    await self._intake(receive)
                nursery.cancel_scope.cancel()
        finally:
            await self._shutdown()

    async def _intake(self, receive: trio.MemoryReceiveChannel[Bundle]) -> None:
        """Take bundles until the channel closes: one wake-up drains all that is queued."""
        add = self.add
        async for bundle in receive:
            add(bundle)
            while True:  # the rest without a schedule point per bundle
                try:
                    add(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break

    def add(self, bundle: Bundle) -> None:
        """Encode (points) and buffer lines; cut a batch when it is full."""
        encode = self._encoder.encode
        lines = [line for line in map(encode, bundle) if line is not None]
        if self._batcher.add(lines):
            self._after_cut()

    def _after_cut(self) -> None:
        held = len(self._inflight) if self._inflight else 0
        self._spill(self._batcher.overflow(held))
        self._work.set()

    def _spill(self, batches: list[Batch]) -> None:
        """Send batches to the spool (dropped and counted when there is none)."""
        if not batches:
            return
        if self._spool is None:
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

    async def _ticker(self) -> None:
        interval, jitter = self._settings.flush_interval, self._settings.flush_jitter
        while True:
            await trio.sleep(interval + self._rng.uniform(0, jitter))
            if self._outage_is_long():
                self._spill(self._batcher.drain())
            elif self._batcher.cut():
                self._after_cut()

    def _outage_is_long(self, ahead: float = 0.0) -> bool:
        """Whether InfluxDB has not taken a write for ``spool_after`` (by ``ahead`` from now)."""
        since = self._failing_since
        if since is None or self._spool is None:
            return False
        return trio.current_time() + ahead - since >= self._settings.spool_after

    # -- the spool, off the trio loop ----------------------------------------

    async def _spool_call(self, fn: Callable[_P, _T], *args: _P.args, **kw: _P.kwargs) -> _T:
        async with self._spool_lock:
            if not self._spool_in_thread:
                await trio.lowlevel.checkpoint()
                return fn(*args, **kw)
            return await trio.to_thread.run_sync(lambda: fn(*args, **kw))

    async def _spill_forever(self) -> None:
        while True:
            await self._spill_wanted.wait()
            self._spill_wanted = trio.Event()
            await self._spill_now()

    async def _spill_now(self) -> None:
        assert self._spool is not None or not self._to_spill
        while self._to_spill and self._spool is not None:
            batch = self._to_spill[0]
            await self._spool_call(self._spool.append, batch)
            self._to_spill.pop(0)
            self._work.set()  # the deliverer replays the spool first

    # -- delivery ------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        while True:
            if not await self._deliver_next():
                await self._work.wait()
                self._work = trio.Event()

    async def _deliver_next(self) -> bool:
        """Write the oldest batch (spool first); False when there is none."""
        spool = self._spool
        entry = spool.peek() if spool is not None else None
        if spool is not None and entry is not None:
            loaded = await self._spool_call(spool.load, entry)
            if loaded is not None:
                stored = loaded.body if self._settings.gzip else None
                settled = await self._send(loaded.lines, stored, may_spill=False)
                await self._spool_call(spool.remove, entry)
                self._account(settled)
            return True
        batch = self._inflight = self._batcher.next()
        if batch is None:
            return False
        settled = await self._send(batch, None, may_spill=True)
        self._inflight = None
        if settled is not None:
            self._account(settled)
        return True

    def _account(self, settled: _Settled | None) -> None:
        # Counted once the whole batch is settled: a write cut off (say, by shutdown)
        # and sent again later is not counted twice.
        if settled is not None:
            self._stats.points_written += settled.written
            self._stats.points_rejected += settled.rejected
        self._settled.set()
        self._settled = trio.Event()

    async def _send(
        self, lines: Batch, stored: bytes | None, *, may_spill: bool
    ) -> _Settled | None:
        """Deliver ``lines`` under the policy; None when they went to the spool instead."""
        failures = 0
        while True:
            verdict = await self._attempt(lines, stored)
            if verdict.action is Action.SPLIT:
                half = len(lines) // 2
                first = await self._send(lines[:half], None, may_spill=False)
                second = await self._send(lines[half:], None, may_spill=False)
                return (first or _Settled()) + (second or _Settled())
            if verdict.action is not Action.RETRY:
                self._failing_since = None
                if failures:  # the one line that says the outage is over, and what is left
                    log.info(
                        "influx_recovered", failed_attempts=failures, **self._backlog(len(lines))
                    )
                return _Settled(verdict.written, verdict.rejected)
            failures += 1
            self._stats.write_errors += 1
            if self._failing_since is None:
                self._failing_since = trio.current_time()
            delay = retry_delay(verdict, failures, self._rng, *self._backoff)
            if may_spill and self._outage_is_long(ahead=delay):
                self._inflight = None
                self._spill([lines, *self._batcher.drain()])
                return None
            await trio.sleep(delay)

    async def _attempt(self, lines: Batch, stored: bytes | None) -> Verdict:
        """One POST and the policy's verdict on its answer."""
        body = stored
        if body is None:
            body = "\n".join(lines).encode()
            if self._settings.gzip:
                body = gzipbody.compress(body)
        start = trio.current_time()
        try:
            response = await self._request.send(
                self._http, content=body, http_timeout=self._settings.timeout
            )
        except httpx.HTTPError as exc:
            verdict = decide(None, {}, "", len(lines), self._clock())
            log.warning(
                verdict.event or "",
                url=self._request.url,
                error=repr(exc),
                points=len(lines),
                **self._backlog(),
            )
            return verdict
        self._stats.write_time_ms = round((trio.current_time() - start) * 1000, 3)
        text = response.text
        verdict = decide(response.status_code, response.headers, text, len(lines), self._clock())
        if verdict.event is not None:
            self._report(verdict, response.status_code, text, lines)
        return verdict

    def _report(self, verdict: Verdict, status: int, text: str, lines: Batch) -> None:
        details: dict[str, object] = {"status": status, "points": len(lines), "answer": text[:300]}
        if verdict.hint:
            details["hint"] = verdict.hint
        if verdict.rejected:
            details.update(
                rejected=verdict.rejected, written=verdict.written, example=lines[0][:200]
            )
        if verdict.series:
            details["series"] = list(verdict.series)
        if verdict.retry_after is not None:
            details["retry_after"] = verdict.retry_after
        getattr(log, verdict.level)(verdict.event, **details)

    # -- shutdown --------------------------------------------------------------

    async def _shutdown(self) -> None:
        with trio.CancelScope(shield=True):
            self._batcher.cut()
            if self._inflight is not None:
                self._batcher.put_back(self._inflight)
                self._inflight = None
            with trio.move_on_after(self._shutdown_timeout):
                while (batch := self._batcher.next()) is not None:
                    self._inflight = batch
                    self._account(await self._send(batch, None, may_spill=False))
                    self._inflight = None
            if self._inflight is not None:  # a write cut off by the deadline
                self._batcher.put_back(self._inflight)
                self._inflight = None
            left = self._batcher.drain()
            if left:
                log.warning("shutdown_spooled", batches=len(left), points=sum(map(len, left)))
            self._spill(left)
            await self._spill_now()
