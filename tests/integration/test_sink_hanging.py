"""The sink against an InfluxDB that holds writes, and one that came back empty.

A hanging InfluxDB (accepts, never answers) must not stretch the loss bound to
``influx.timeout``: the outage clock starts when a write is sent, so within
``spool_after`` (+ one flush) everything buffered is on disk. An InfluxDB that
lost its database answers 404 "database not found": the sink creates it and
writes again.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import trio
from structlog.testing import capture_logs

from collector.config import InfluxSettings
from collector.points.lineproto import Point
from collector.sink.spool import Spool
from collector.sink.writer import Sink
from tests.helpers import scalar, wait_until
from tests.servers import InfluxServer, hanging_server

POINTS = 600


def bundles(count: int) -> list[list[Point]]:
    """``count`` one-point bundles of one series, ``i`` as field and time offset."""
    return [[Point("hang", (("k", "v"),), {"i": i}, 1_700_000_000_000 + i)] for i in range(count)]


async def test_a_hanging_influxdb_sends_everything_to_the_spool_long_before_its_timeout(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10**9)
    with hanging_server() as hanging:
        # An hour of timeout: before the fix the first write held everything for it.
        settings = InfluxSettings(
            url=hanging.url, batch_size=100, flush_interval=0.05, spool_after=0.2, timeout=3600
        )
        sink = Sink(http, settings, spool, shutdown_timeout=0.2)
        send, receive = trio.open_memory_channel[list[Point]](POINTS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            for bundle in bundles(POINTS):
                await send.send(bundle)
            # (the spool counts a batch a moment before memory lets go of it)
            await wait_until(
                lambda: (spool.points, sink.buffered_points) == (POINTS, 0), seconds=30
            )
            assert hanging.accepted >= 1  # the writes were sent, and held
            await send.aclose()
    assert sink.stats.points_dropped == 0
    assert sink.stats.points_written == 0


async def test_a_write_answered_database_not_found_creates_it_and_is_sent_again(
    influxdb: InfluxServer, http: httpx.AsyncClient
) -> None:
    database = f"gone_{uuid.uuid4().hex[:10]}"  # an InfluxDB that came back empty
    settings = InfluxSettings(url=influxdb.url, database=database, flush_interval=0.05)
    sink = Sink(http, settings, None, backoff=(0.02, 0.2))
    send, receive = trio.open_memory_channel[list[Point]](POINTS)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            async with send:
                for bundle in bundles(POINTS):
                    await send.send(bundle)
                await wait_until(lambda: sink.stats.points_written == POINTS, seconds=60)
    assert scalar(influxdb, 'SELECT count("i") FROM "hang"', database) == POINTS
    assert sink.stats.databases_created == 1
    assert [e["event"] for e in logs].count("influx_database_created") == 1
    assert sink.stats.points_dropped == 0
