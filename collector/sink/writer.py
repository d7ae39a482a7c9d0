"""The batching writer: points in from a trio channel, batches out to InfluxDB.

Policy (after Telegraf's):

* a batch is cut at ``influx.batch_size`` points or every ``flush_interval``
  (+ up to ``flush_jitter``) seconds, whichever comes first;
* 2xx: done. 413: split the batch in half and send the halves. 400/422: the
  server refused some lines (and kept the good ones): log one example, count
  them as rejected, do not resend. 401/403/404: keep the data, alarm, retry.
  429/5xx/network: keep the data, back off exponentially with jitter, honour
  ``Retry-After``;
* memory is bounded (``buffer_limit`` points): past it, the oldest batches go
  to the on-disk :class:`~collector.sink.spool.Spool`, which is replayed first when
  InfluxDB answers again and survives restarts;
* when the input channel closes, or the sink is cancelled, what is buffered is
  written within ``shutdown_timeout`` and the rest is spooled.
"""

from __future__ import annotations

import gzip
import random
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Final

import httpx
import trio

from collector.backoff import backoff_delay
from collector.config import InfluxSettings
from collector.logging import get_logger
from collector.points.lineproto import Encoder, Point
from collector.sink.spool import Spool, SpoolEntry, decompress

log = get_logger(__name__)

MAX_BACKOFF: Final = 60.0
BASE_BACKOFF: Final = 0.5
MAX_RETRY_AFTER: Final = 300.0
_DROPPED: Final = re.compile(r"dropped=(\d+)")
_UNPARSABLE: Final = re.compile(r"unable to parse")

Bundle = Sequence[Point]


@dataclass
class SinkStats:
    """The writer's share of ``collector_stats``."""

    points_written: int = 0
    points_dropped: int = 0
    points_rejected: int = 0
    write_errors: int = 0
    write_time_ms: float = 0.0
    buffer_size: int = 0
    spool_bytes: int = 0

    def as_fields(self) -> dict[str, float | int]:
        """The counters as point fields."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class _Settled:
    """How a batch ended: lines InfluxDB took and lines it refused."""

    written: int = 0
    rejected: int = 0

    def __add__(self, other: _Settled) -> _Settled:
        return _Settled(self.written + other.written, self.rejected + other.rejected)


def write_request(settings: InfluxSettings) -> tuple[str, dict[str, str], dict[str, str]]:
    """URL, query parameters and headers of a write for the configured API."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if settings.gzip:
        headers["Content-Encoding"] = "gzip"
    if settings.api == "v2":
        params = {"org": settings.org, "bucket": settings.bucket, "precision": "ms"}
        if settings.token is not None:
            headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
        return f"{settings.url}/api/v2/write", params, headers
    params = {"db": settings.database, "precision": "ms"}
    if settings.retention_policy:
        params["rp"] = settings.retention_policy
    return f"{settings.url}/write", params, headers


class Sink:
    """Writes bundles of points from a channel to InfluxDB, never losing a good one."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: InfluxSettings,
        spool: Spool | None,
        *,
        instance: str = "gate-collector",
        shard: str = "0/1",
        stats_interval: float = 10.0,
        shutdown_timeout: float = 10.0,
        extra_stats: Callable[[], dict[str, float | int]] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        backoff: tuple[float, float] = (BASE_BACKOFF, MAX_BACKOFF),
    ) -> None:
        self._http = http
        self._settings = settings
        self._spool = spool
        self._url, self._params, self._headers = write_request(settings)
        auth = settings.username, settings.password
        self._auth = (
            httpx.BasicAuth(auth[0], auth[1].get_secret_value())
            if settings.api == "v1" and auth[0] and auth[1] is not None
            else None
        )
        self._tags = (("instance", instance), ("shard", shard))
        self._stats_interval = stats_interval
        self._shutdown_timeout = shutdown_timeout
        self._extra_stats = extra_stats
        self._rng = rng or random.Random()
        self._clock = clock
        self._base_backoff, self._max_backoff = backoff
        self._encoder = Encoder()
        self._pending: list[str] = []
        self._queue: deque[list[str]] = deque()
        self._queued_points = 0
        self._inflight: list[str] | None = None
        self._work = trio.Event()
        self._settled = trio.Event()  # set (and replaced) whenever a batch is settled
        self.stats = SinkStats()

    async def retarget(self, settings: InfluxSettings) -> None:
        """SIGHUP: write what is buffered to the old target (within the shutdown
        timeout), then send everything after it to ``settings``' target."""
        self._cut()
        with trio.move_on_after(self._shutdown_timeout):
            while self._queue or self._inflight is not None:
                await self._settled.wait()
        self._settings = settings
        self._url, self._params, self._headers = write_request(settings)
        auth = settings.username, settings.password
        self._auth = (
            httpx.BasicAuth(auth[0], auth[1].get_secret_value())
            if settings.api == "v1" and auth[0] and auth[1] is not None
            else None
        )
        log.info("influx_target", url=self._url, params=self._params)

    # -- intake --------------------------------------------------------------

    async def run(self, receive: trio.MemoryReceiveChannel[Bundle]) -> None:
        """Run until ``receive`` closes (or cancellation), then flush and spool."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._deliver_forever)
                if self._stats_interval > 0:
                    nursery.start_soon(self._stats_loop)
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
        """Encode and buffer points; cut a batch when it is full."""
        encode = self._encoder.encode
        for point in bundle:
            line = encode(point)
            if line is not None:
                self._pending.append(line)
        if len(self._pending) >= self._settings.batch_size:
            self._cut()

    def _cut(self) -> None:
        if not self._pending:
            return
        size = self._settings.batch_size
        while self._pending:
            batch, self._pending = self._pending[:size], self._pending[size:]
            self._queue.append(batch)
            self._queued_points += len(batch)
        self._overflow()
        self._work.set()

    def _overflow(self) -> None:
        while self._queued_points > self._settings.buffer_limit and self._queue:
            oldest = self._queue.popleft()
            self._queued_points -= len(oldest)
            self._to_spool(oldest)

    def _to_spool(self, batch: list[str]) -> None:
        if self._spool is None:
            self.stats.points_dropped += len(batch)
            log.error("buffer_full_dropped", points=len(batch), hint="configure state.dir")
            return
        self.stats.points_dropped += self._spool.append(batch)

    async def _ticker(self) -> None:
        interval, jitter = self._settings.flush_interval, self._settings.flush_jitter
        while True:
            await trio.sleep(interval + self._rng.uniform(0, jitter))
            self._cut()

    async def _stats_loop(self) -> None:
        while True:
            await trio.sleep(self._stats_interval)
            self.add([self.stats_point()])

    def stats_point(self) -> Point:
        """A ``collector_stats`` point of the writer's counters (and any extra ones)."""
        self.stats.buffer_size = self.buffered_points
        self.stats.spool_bytes = self._spool.bytes if self._spool else 0
        values = self.stats.as_fields()
        if self._extra_stats is not None:
            values.update(self._extra_stats())
        return Point("collector_stats", self._tags, values, int(self._clock() * 1000))

    @property
    def buffered_points(self) -> int:
        """Points held in memory (pending, queued, in flight)."""
        inflight = len(self._inflight) if self._inflight else 0
        return len(self._pending) + self._queued_points + inflight

    # -- delivery ------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        while True:
            if not await self._deliver_next():
                await self._work.wait()
                self._work = trio.Event()

    async def _deliver_next(self) -> bool:
        """Write the oldest batch (spool first); False when there is none."""
        entry = self._spool.peek() if self._spool else None
        if entry is not None:
            await self._deliver_spooled(entry)
            return True
        if not self._queue:
            return False
        batch = self._inflight = self._queue.popleft()
        self._queued_points -= len(batch)
        self._account(await self._write(batch))
        self._inflight = None
        return True

    async def _deliver_spooled(self, entry: SpoolEntry) -> None:
        assert self._spool is not None
        body = self._spool.read(entry)
        try:
            lines = decompress(body)
        except (OSError, EOFError, UnicodeDecodeError):
            log.error("spool_file_unreadable", file=str(entry.path), points=entry.points)
            self.stats.points_dropped += entry.points
        else:
            self._account(await self._write(lines))
        self._spool.remove(entry)

    def _account(self, settled: _Settled) -> None:
        # Counted once the whole batch is settled: a write cut off (say, by shutdown)
        # and sent again later is not counted twice.
        self.stats.points_written += settled.written
        self.stats.points_rejected += settled.rejected
        self._settled.set()
        self._settled = trio.Event()

    async def _write(self, lines: list[str]) -> _Settled:
        """Deliver ``lines`` under the response policy; returns once they are settled."""
        failures = 0
        while True:
            response = await self._post(lines)
            settled = None if response is None else await self._settle(lines, response)
            if settled is not None:
                if failures:  # the one line that says the outage is over, and what is left
                    log.info(
                        "influx_recovered", failed_attempts=failures, **self._backlog(len(lines))
                    )
                return settled
            failures += 1
            self.stats.write_errors += 1
            await trio.sleep(self._backoff(failures, response))

    async def _post(self, lines: list[str]) -> httpx.Response | None:
        body = "\n".join(lines).encode()
        if self._settings.gzip:
            body = gzip.compress(body, compresslevel=1)
        start = trio.current_time()
        try:
            response = await self._http.post(
                self._url,
                params=self._params,
                headers=self._headers,
                content=body,
                auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                timeout=self._settings.timeout,
            )
        except httpx.HTTPError as exc:
            log.warning(
                "influx_unreachable",
                url=self._url,
                error=repr(exc),
                points=len(lines),
                **self._backlog(),
            )
            return None
        self.stats.write_time_ms = round((trio.current_time() - start) * 1000, 3)
        return response

    def _backlog(self, settled: int = 0) -> dict[str, int]:
        """Points waiting (but ``settled`` ones), in memory and spooled, for outage lines."""
        spooled = self._spool.points if self._spool is not None else 0
        return {
            "backlog_points": self.buffered_points - settled + spooled,
            "spooled_points": spooled,
        }

    async def _settle(self, lines: list[str], response: httpx.Response) -> _Settled | None:
        """The outcome of one answer; None: keep the lines and try again."""
        status = response.status_code
        if 200 <= status < 300:
            return _Settled(written=len(lines))
        if status == 413:
            return await self._split(lines)
        if status in (400, 422):
            return self._reject(lines, response)
        if status in (401, 403, 404):
            log.error(
                "influx_write_refused",
                status=status,
                answer=response.text[:300],
                hint="check influx.database/bucket and the credentials; data is kept and retried",
            )
            return None
        log.warning("influx_write_failed", status=status, answer=response.text[:200])
        return None

    async def _split(self, lines: list[str]) -> _Settled:
        if len(lines) == 1:
            log.error("influx_line_too_large", line=lines[0][:200], bytes=len(lines[0]))
            return _Settled(rejected=1)
        half = len(lines) // 2
        log.info("influx_batch_split", points=len(lines))
        return await self._write(lines[:half]) + await self._write(lines[half:])

    def _reject(self, lines: list[str], response: httpx.Response) -> _Settled:
        text = response.text
        dropped = sum(int(n) for n in _DROPPED.findall(text))
        dropped += len(_UNPARSABLE.findall(text))
        rejected = min(len(lines), dropped) if dropped else len(lines)
        log.error(
            "influx_rejected_lines",
            status=response.status_code,
            rejected=rejected,
            of=len(lines),
            answer=text[:500],
        )
        return _Settled(written=len(lines) - rejected, rejected=rejected)

    def _backoff(self, failures: int, response: httpx.Response | None) -> float:
        if response is not None:
            retry_after = response.headers.get("Retry-After")
            if retry_after is not None and retry_after.strip().isdigit():
                return min(float(retry_after), MAX_RETRY_AFTER)
        return backoff_delay(failures, self._base_backoff, self._max_backoff, self._rng)

    # -- shutdown --------------------------------------------------------------

    async def _shutdown(self) -> None:
        self._cut()
        if self._inflight is not None:
            self._queue.appendleft(self._inflight)
            self._queued_points += len(self._inflight)
            self._inflight = None
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._shutdown_timeout
            while self._queue:
                batch = self._inflight = self._queue[0]
                self._account(await self._write(batch))
                self._queue.popleft()
                self._queued_points -= len(batch)
                self._inflight = None
        self._inflight = None  # a write cut off by the deadline: its batch is still queued
        left = list(self._queue)
        self._queue.clear()
        self._queued_points = 0
        for batch in left:
            self._to_spool(batch)
        if left:
            log.warning("shutdown_spooled", batches=len(left), points=sum(map(len, left)))
