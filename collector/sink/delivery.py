"""The sink's delivery loop: the oldest batch to InfluxDB, under the write policy.

* spooled batches are sent first, as stored (the gzip body straight from disk);
* each answer is judged by :mod:`~collector.sink.policy` (written, rejected,
  split in halves, or retried after a backoff);
* while InfluxDB is not taking writes, everything buffered (the batch being
  retried too) reaches the spool within ``spool_after`` seconds, so a SIGKILL
  loses at most that much. "Not taking writes" starts when a write is sent that
  is not answered, not when it times out: a hanging InfluxDB (``influx.timeout``
  later) must not stretch the bound, so a write from memory unanswered for
  ``spool_after`` is given up and its batch spooled with the rest;
* a 404 "database not found" (an InfluxDB that came back empty) creates the
  database when ``influx.create_database`` is on, and the write is sent again.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import httpx
import trio

from collector.base.logging import get_logger
from collector.config import InfluxSettings
from collector.sink import gzipbody
from collector.sink.backlog import Backlog
from collector.sink.batcher import Batch
from collector.sink.counters import Settled, SinkStats
from collector.sink.database import create_database, may_create
from collector.sink.policy import Action, Verdict, decide, retry_delay
from collector.sink.request import write_request

log = get_logger(__name__)


class Delivery:
    """Writes the backlog's batches to InfluxDB, one at a time, counting how each ended."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: InfluxSettings,
        backlog: Backlog,
        stats: SinkStats,
        *,
        rng: random.Random,
        clock: Callable[[], float],
        backoff: tuple[float, float],
    ) -> None:
        self._http = http
        self.settings = settings
        self._request = write_request(settings)
        self._backlog = backlog
        self._stats = stats
        self._rng = rng
        self._clock = clock
        self._backoff = backoff
        self._failing_since: float | None = None  # trio time of the first failure in a row
        self._asked_at: float | None = None  # trio time the unanswered write was sent
        self._settled = trio.Event()  # set (and replaced) whenever a batch is settled

    def retarget(self, settings: InfluxSettings) -> None:
        """Send every write from now on to ``settings``' target."""
        self.settings = settings
        self._request = write_request(settings)
        log.info("influx_target", url=self._request.url, params=self._request.params)

    async def settled(self) -> None:
        """Sleep until the next batch is settled."""
        await self._settled.wait()

    def outage_since(self) -> float | None:
        """Trio time since which InfluxDB has taken no write: the first failure in a row,
        else the write waiting for its answer; None while writes go through."""
        return self._failing_since if self._failing_since is not None else self._asked_at

    def outage_is_long(self, ahead: float = 0.0) -> bool:
        """Whether InfluxDB has not taken a write for ``spool_after`` (by ``ahead`` from now)."""
        since = self.outage_since()
        if since is None or self._backlog.spool is None:
            return False
        return trio.current_time() + ahead - since >= self.settings.spool_after

    async def forever(self) -> None:
        """Deliver batches as they come."""
        while True:
            if not await self._deliver_next():
                await self._backlog.wait_for_work()

    async def write_out(self) -> None:
        """Write what memory holds, batch after batch, never spilling (the shutdown flush)."""
        backlog = self._backlog
        while (batch := backlog.batcher.next()) is not None:
            backlog.inflight = batch
            self._account(await self._send(batch, None, may_spill=False))
            backlog.inflight = None

    async def _deliver_next(self) -> bool:
        """Write the oldest batch (spool first); False when there is none."""
        backlog = self._backlog
        spool = backlog.spool
        entry = spool.peek() if spool is not None else None
        if spool is not None and entry is not None:
            loaded = await backlog.spool_call(spool.load, entry)
            if loaded is not None:
                stored = loaded.body if self.settings.gzip else None
                settled = await self._send(loaded.lines, stored, may_spill=False)
                await backlog.spool_call(spool.remove, entry)
                self._account(settled)
            return True
        batch = backlog.inflight = backlog.batcher.next()
        if batch is None:
            return False
        settled = await self._send(batch, None, may_spill=True)
        backlog.inflight = None
        if settled is not None:
            self._account(settled)
        return True

    def _account(self, settled: Settled | None) -> None:
        # Counted once the whole batch is settled: a write cut off (say, by shutdown)
        # and sent again later is not counted twice.
        if settled is not None:
            self._stats.points_written += settled.written
            self._stats.points_rejected += settled.rejected
        self._settled.set()
        self._settled = trio.Event()

    async def _send(self, lines: Batch, stored: bytes | None, *, may_spill: bool) -> Settled | None:
        """Deliver ``lines`` under the policy; None when they went to the spool instead."""
        failures = 0
        created = False  # at most one CREATE DATABASE per batch: never a tight loop
        while True:
            sent_at = trio.current_time()
            verdict = await self._attempt(lines, stored, may_give_up=may_spill)
            if verdict.action is Action.SPLIT:
                half = len(lines) // 2
                first = await self._send(lines[:half], None, may_spill=False)
                second = await self._send(lines[half:], None, may_spill=False)
                return (first or Settled()) + (second or Settled())
            if verdict.action is not Action.RETRY:
                return self._ended(verdict, failures, len(lines))
            failures += 1
            self._stats.write_errors += 1
            if self._failing_since is None:
                self._failing_since = sent_at
            if verdict.missing_database and not created and await self._create_database():
                created = True
                continue  # at once: the database is there now
            delay = retry_delay(verdict, failures, self._rng, *self._backoff)
            if may_spill and self.outage_is_long(ahead=delay):
                self._backlog.inflight = None
                self._backlog.spill([lines, *self._backlog.batcher.drain()])
                return None
            await trio.sleep(delay)

    def _ended(self, verdict: Verdict, failures: int, points: int) -> Settled:
        """A batch is settled: the outage (if any) is over."""
        self._failing_since = None
        if failures:  # the one line that says the outage is over, and what is left
            log.info(
                "influx_recovered", failed_attempts=failures, **self._backlog.outage_fields(points)
            )
        return Settled(verdict.written, verdict.rejected)

    async def _create_database(self) -> bool:
        """CREATE DATABASE after a write's 404, when allowed; True when it was created."""
        if not may_create(self.settings):
            return False
        if not await create_database(self._http, self.settings):
            return False
        self._stats.databases_created += 1
        log.warning(
            "influx_database_created",
            database=self.settings.database,
            hint="InfluxDB answered 404 database not found (it came back empty?); "
            "the write is sent again",
        )
        return True

    def _give_up_at(self, may_give_up: bool) -> float:
        """When a write is abandoned unanswered: ``spool_after`` into the outage, for a
        batch from memory (it is then spooled); a spooled one waits for ``timeout``.
        A first try after a long outage still gets ``spool_after`` of its own (else a
        recovered InfluxDB would never be tried with a batch from memory)."""
        if not may_give_up or self._backlog.spool is None:
            return math.inf
        now, since = trio.current_time(), self.outage_since()
        end = (now if since is None else since) + self.settings.spool_after
        return end if end > now else now + self.settings.spool_after

    async def _attempt(self, lines: Batch, stored: bytes | None, *, may_give_up: bool) -> Verdict:
        """One POST and the policy's verdict on its answer."""
        body = stored
        if body is None:
            body = "\n".join(lines).encode()
            if self.settings.gzip:
                body = gzipbody.compress(body)
        start = trio.current_time()
        if self._asked_at is None:
            self._asked_at = start
        give_up_at = self._give_up_at(may_give_up)
        response: httpx.Response | None = None
        error = "no answer within influx.spool_after"
        try:
            with trio.move_on_at(give_up_at):
                response = await self._request.send(
                    self._http, content=body, http_timeout=self.settings.timeout
                )
        except httpx.HTTPError as exc:
            error = repr(exc)
        finally:
            self._asked_at = None
        if response is None:
            verdict = decide(None, {}, "", len(lines), self._clock())
            self._stats.record_attempt(trio.current_time() - start, taken=False, now=self._clock())
            log.warning(
                verdict.event or "",
                url=self._request.url,
                error=error,
                points=len(lines),
                **self._backlog.outage_fields(),
            )
            return verdict
        elapsed = trio.current_time() - start
        self._stats.write_time_ms = round(elapsed * 1000, 3)
        text = response.text
        verdict = decide(response.status_code, response.headers, text, len(lines), self._clock())
        taken = verdict.action is not Action.RETRY  # a 413 to split is an answer too
        self._stats.record_attempt(elapsed, taken=taken, now=self._clock())
        if verdict.event is not None:
            _report(verdict, response.status_code, text, lines)
        return verdict


def _report(verdict: Verdict, status: int, text: str, lines: Batch) -> None:
    """Log what InfluxDB's answer meant, at the policy's level."""
    details: dict[str, object] = {"status": status, "points": len(lines), "answer": text[:300]}
    if verdict.hint:
        details["hint"] = verdict.hint
    if verdict.rejected:
        details.update(rejected=verdict.rejected, written=verdict.written, example=lines[0][:200])
    if verdict.series:
        details["series"] = list(verdict.series)
    if verdict.retry_after is not None:
        details["retry_after"] = verdict.retry_after
    getattr(log, verdict.level)(verdict.event, **details)
