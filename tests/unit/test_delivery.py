"""Delivery and Backlog: the sink's write loop, its outage spill, and the memory bound.

Rules kept here: trio's autojump clock; InfluxDB is an httpx.MockTransport whose
answers a test scripts (each request recorded with its trio time and lines); the
spool is real, in tmp_path, called on the trio thread (``in_thread=False``: a worker
thread would let the mock clock jump while it works); backoff waits are drawn from
a seeded rng.
"""

from __future__ import annotations

import gzip
import random
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from collector.config import InfluxSettings
from collector.sink.backlog import Backlog
from collector.sink.batcher import Batcher
from collector.sink.counters import SinkStats
from collector.sink.delivery import Delivery
from collector.sink.spool import REASON_BUFFER_FULL, Spool
from collector.sink.writer import Sink

SPOOL_AFTER = 5.0
BACKOFF = (1.0, 8.0)


@dataclass
class FakeInflux:
    """Answers writes from ``answers`` (then ``default``); records every attempt."""

    answers: list[int] = field(default_factory=list)
    default: int = 204
    attempts: list[tuple[float, int, list[str]]] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        """One write: its lines recorded with the status it is answered."""
        status = self.answers.pop(0) if self.answers else self.default
        body = request.content
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.attempts.append((trio.current_time(), status, body.decode().split("\n")))
        return httpx.Response(status, text="" if status < 300 else '{"error":"busy"}')

    def written(self) -> list[list[str]]:
        """The batches InfluxDB took, in order."""
        return [lines for _, status, lines in self.attempts if status == 204]


@dataclass
class Rig:
    """A Delivery and its Backlog over a real spool, their loops running."""

    delivery: Delivery
    backlog: Backlog
    spool: Spool
    stats: SinkStats
    influx: FakeInflux

    def feed(self, *batches: list[str]) -> None:
        """Buffer each batch (two lines: a full batch, cut at once)."""
        for lines in batches:
            if self.backlog.batcher.add(lines):
                self.backlog.after_cut()


def batch(n: int) -> list[str]:
    return [f"m,b={n} v=1 {n}", f"m,b={n} v=2 {n}"]


async def make(
    tmp_path: Path, *, batch_size: int = 2, buffer_limit: int = 100, spool: bool = True
) -> tuple[Rig, httpx.AsyncClient]:
    influx = FakeInflux()
    settings = InfluxSettings(
        batch_size=batch_size, buffer_limit=buffer_limit, spool_after=SPOOL_AFTER
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(influx.handler))
    disk = Spool(tmp_path / "spool", 1 << 20) if spool else None
    stats = SinkStats()
    backlog = Backlog(Batcher(batch_size, buffer_limit), disk, stats, in_thread=False)
    delivery = Delivery(
        http, settings, backlog, stats, rng=random.Random(1), clock=lambda: 1e9, backoff=BACKOFF
    )
    # Without a spool the rig's is a bystander that stays empty.
    shown = disk if disk is not None else Spool(tmp_path / "unused", 1)
    return Rig(delivery, backlog, shown, stats, influx), http


@pytest.fixture
async def rig(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Rig]:
    """Batches of two lines, the delivery and spill loops running."""
    made, http = await make(tmp_path)
    nursery.start_soon(made.delivery.forever)
    nursery.start_soon(made.backlog.spill_forever)
    async with http:
        yield made


async def test_batches_are_written_in_order_and_counted_once(rig: Rig, autojump_clock: Any) -> None:
    rig.feed(batch(0), batch(1), batch(2))
    await trio.sleep(1)
    assert rig.influx.written() == [batch(0), batch(1), batch(2)]
    assert rig.stats.points_written == 6 and rig.backlog.points == 0


async def test_a_short_outage_keeps_the_data_in_memory_and_retries_with_backoff(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.influx.answers = [503, 503]
    rig.feed(batch(0))
    await trio.sleep(0.1)
    assert rig.backlog.points == 2 and len(rig.spool) == 0
    await trio.sleep(10)
    rng = random.Random(1)
    waits = [rng.uniform(BACKOFF[0] / 2, BACKOFF[0]), rng.uniform(1.0, 2.0)]
    assert [t for t, _, _ in rig.influx.attempts] == pytest.approx([0, waits[0], sum(waits)])
    assert rig.influx.written() == [batch(0)] and len(rig.spool) == 0
    assert rig.stats.write_errors == 2 and rig.stats.points_written == 2


async def test_a_long_outage_puts_everything_buffered_on_disk_within_spool_after(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.influx.default = 503
    rig.feed(batch(0), batch(1), batch(2))
    await trio.sleep(SPOOL_AFTER)
    assert len(rig.spool) == 3 and rig.spool.points == 6
    assert rig.backlog.points == 0


async def test_after_an_outage_the_spool_is_replayed_first_oldest_first(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.influx.default = 503
    rig.feed(batch(0), batch(1))
    await trio.sleep(60)
    rig.influx.default = 204
    rig.feed(batch(2))
    with capture_logs() as logs:
        await trio.sleep(60)
    assert rig.influx.written() == [batch(0), batch(1), batch(2)]
    assert len(rig.spool) == 0 and rig.stats.points_written == 6
    assert [e["event"] for e in logs if e["event"] == "influx_recovered"] == ["influx_recovered"]


async def test_one_failure_after_an_outage_is_over_keeps_the_batch_in_memory(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.influx.default = 503
    rig.feed(batch(0))
    await trio.sleep(60)
    rig.influx.default = 204
    await trio.sleep(60)  # the spool was replayed: the outage is over
    assert rig.influx.written() == [batch(0)] and len(rig.spool) == 0
    rig.influx.answers = [503]
    rig.feed(batch(1))
    await trio.sleep(0.1)
    assert len(rig.spool) == 0 and rig.backlog.points == 2  # retried from memory
    await trio.sleep(10)
    assert rig.influx.written() == [batch(0), batch(1)]


async def test_without_a_spool_an_outage_keeps_the_data_in_memory(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: Any
) -> None:
    rig, http = await make(tmp_path, spool=False)
    rig.influx.default = 503
    async with http:
        nursery.start_soon(rig.delivery.forever)
        rig.feed(batch(0), batch(1))
        await trio.sleep(120)
        assert rig.backlog.points == 4 and not rig.delivery.outage_is_long()
        assert rig.stats.dropped_by_reason == {}


async def test_past_the_memory_bound_the_oldest_batches_go_to_the_spool(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: Any
) -> None:
    rig, http = await make(tmp_path, buffer_limit=4)
    rig.influx.default = 503
    async with http:
        nursery.start_soon(rig.backlog.spill_forever)  # no deliverer: memory only fills
        rig.feed(batch(0), batch(1), batch(2), batch(3))
        await trio.sleep(0.1)
        assert rig.backlog.points == 4
        entry = rig.spool.peek()
        assert entry is not None and len(rig.spool) == 2
        loaded = rig.spool.load(entry)
        assert loaded is not None and loaded.lines == batch(0)


async def test_past_the_memory_bound_without_a_spool_the_oldest_are_dropped_and_counted(
    tmp_path: Path, autojump_clock: Any
) -> None:
    rig, http = await make(tmp_path, buffer_limit=4, spool=False)
    async with http:
        rig.feed(batch(0), batch(1), batch(2), batch(3))
        assert rig.backlog.points == 4
        assert rig.stats.dropped_by_reason == {REASON_BUFFER_FULL: 4}
        assert rig.backlog.drops() == {REASON_BUFFER_FULL: 4}


async def test_a_batch_too_large_is_sent_in_halves(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: Any
) -> None:
    rig, http = await make(tmp_path, batch_size=4)
    rig.influx.answers = [413]
    async with http:
        nursery.start_soon(rig.delivery.forever)
        rig.feed(batch(0) + batch(1))
        await trio.sleep(1)
    assert rig.influx.written() == [batch(0), batch(1)]
    assert rig.stats.points_written == 4


async def test_the_shutdown_flush_never_spills(tmp_path: Path, autojump_clock: Any) -> None:
    rig, http = await make(tmp_path)
    rig.influx.default = 503
    async with http:
        async with trio.open_nursery() as spilling:
            spilling.start_soon(rig.backlog.spill_forever)
            rig.feed(batch(0), batch(1))
            with trio.move_on_after(60) as flush:
                await rig.delivery.write_out()
            assert flush.cancelled_caught  # InfluxDB is down: it retried until the deadline
            await trio.sleep(1)  # anything spilled would be on disk by now
            assert len(rig.spool) == 0 and rig.backlog.points == 4
            spilling.cancel_scope.cancel()  # as the sink's loops end before its shutdown
        rig.backlog.put_back()
        await rig.backlog.spool_all(10.0)  # what the sink does after the flush's deadline
        assert len(rig.spool) == 2 and rig.backlog.points == 0


async def test_the_shutdown_flush_writes_what_memory_holds(
    tmp_path: Path, autojump_clock: Any
) -> None:
    rig, http = await make(tmp_path)
    async with http:
        rig.feed(batch(0), batch(1))
        await rig.delivery.write_out()
    assert rig.influx.written() == [batch(0), batch(1)] and rig.stats.points_written == 4


async def run_sink(tmp_path: Path, status: int, lines: list[str]) -> tuple[FakeInflux, Spool, Sink]:
    """A Sink fed ``lines`` (one bundle each) whose channel then closes."""
    influx = FakeInflux(default=status)
    spool = Spool(tmp_path / "spool", 1 << 20)
    settings = InfluxSettings(batch_size=2, spool_after=SPOOL_AFTER)
    async with httpx.AsyncClient(transport=httpx.MockTransport(influx.handler)) as http:
        sink = Sink(
            http, settings, spool, shutdown_timeout=3.0, rng=random.Random(2), spool_in_thread=False
        )
        send, receive = trio.open_memory_channel[Any](100)
        for line in lines:
            send.send_nowait([line])
        send.close()
        with trio.fail_after(60):
            await sink.run(receive)
    return influx, spool, sink


async def test_at_shutdown_the_sink_writes_what_it_holds(
    tmp_path: Path, autojump_clock: Any
) -> None:
    influx, spool, sink = await run_sink(tmp_path, 204, [*batch(0), "m v=3 3"])
    assert sorted(line for lines in influx.written() for line in lines) == sorted(
        [*batch(0), "m v=3 3"]
    )
    assert len(spool) == 0 and sink.stats.points_written == 3


async def test_at_shutdown_what_influxdb_does_not_take_in_time_is_spooled(
    tmp_path: Path, autojump_clock: Any
) -> None:
    influx, spool, sink = await run_sink(tmp_path, 503, [*batch(0), "m v=3 3"])
    assert influx.written() == [] and spool.points == 3
    assert sink.buffered_points == 0


class HangingSpool(Spool):
    """A spool on a disk that hangs: ``append`` blocks until ``release`` is set."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, 1 << 20)
        self.release = threading.Event()

    def append(self, lines: list[str]) -> int:
        """Block (in the worker thread) until released, then spool."""
        self.release.wait(timeout=30)  # the guard: a test that fails still ends
        return super().append(lines)


async def test_spooling_at_shutdown_gives_up_on_a_hung_disk_within_its_timeout(
    tmp_path: Path,
) -> None:
    # Real threads on the real clock: a hung disk must not hold the exit.
    spool = HangingSpool(tmp_path / "spool")
    stats = SinkStats()
    backlog = Backlog(Batcher(2, 100), spool, stats, in_thread=True)
    backlog.batcher.add(batch(0))
    guard = threading.Timer(10, spool.release.set)  # ends the thread if the test fails
    guard.start()
    try:
        with capture_logs() as logs:
            await backlog.spool_all(0.2)
        hung = not spool.release.is_set()  # returned while the write still hangs
    finally:
        spool.release.set()
        guard.cancel()
    assert hung
    assert [(e["event"], e["points"]) for e in logs if e["log_level"] == "error"] == [
        ("shutdown_spool_timeout", 2)
    ]
