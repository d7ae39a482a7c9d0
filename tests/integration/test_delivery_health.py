"""The sink's delivery health that /metrics shows: the write-duration histogram and
the age of the oldest point not yet settled (pure parts), and the sink keeping them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from collector.config import InfluxSettings
from collector.points.lineproto import Point
from collector.sink.counters import Histogram, Lag
from collector.sink.spool import Spool
from collector.sink.writer import Sink
from tests.servers import InfluxServer, free_port


def test_the_histogram_is_cumulative_and_ends_at_inf() -> None:
    histogram = Histogram(bounds=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.1, 2), (1.0, 3), (float("inf"), 4)]
    assert histogram.total == pytest.approx(3.65)


def test_the_oldest_unsettled_point_is_the_first_not_yet_settled() -> None:
    lag = Lag(resolution=1.0)
    lag.take(10, now=100.0)
    lag.take(5, now=105.0)
    assert lag.oldest_age(settled=0, now=110.0) == 10.0
    assert lag.oldest_age(settled=9, now=110.0) == 10.0  # one of the first ten still waits
    assert lag.oldest_age(settled=10, now=110.0) == 5.0
    assert lag.oldest_age(settled=15, now=110.0) == 0.0


def test_intakes_within_the_resolution_share_the_earlier_time() -> None:
    lag = Lag(resolution=1.0)
    lag.take(1, now=100.0)
    lag.take(1, now=100.5)
    lag.take(0, now=200.0)  # nothing came: no mark
    assert lag.oldest_age(settled=1, now=101.0) == 1.0  # over by at most the resolution
    assert lag.oldest_age(settled=2, now=300.0) == 0.0


def points(n: int) -> list[Point]:
    return [Point("m", (("a", "1"),), {"v": i}, 1_700_000_000_000 + i) for i in range(n)]


async def test_a_dead_influxdb_shows_as_down_with_an_ageing_backlog(tmp_path: Path) -> None:
    clock = [1000.0]
    settings = InfluxSettings(url=f"http://127.0.0.1:{free_port()}", flush_interval=0.05)
    async with httpx.AsyncClient() as http:
        sink = Sink(
            http,
            settings,
            Spool(tmp_path, 10_000_000),
            clock=lambda: clock[0],
            shutdown_timeout=0.5,
        )
        send, receive = trio.open_memory_channel[list[Point]](10)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            await send.send(points(3))
            with trio.fail_after(30):
                while sink.stats.write_errors == 0:
                    await trio.sleep(0.05)
            clock[0] += 42.0
            stats = sink.stats
            assert (stats.influx_up, stats.last_success_time) == (False, 0.0)
            assert stats.oldest_unsent_seconds == 42.0
            assert stats.write_seconds.cumulative()[-1][1] >= 1
            nursery.cancel_scope.cancel()


async def test_a_write_taken_sets_up_and_the_time_and_empties_the_lag(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    influxdb.create_database("health")
    settings = InfluxSettings(url=influxdb.url, database="health", flush_interval=0.05)
    async with httpx.AsyncClient() as http:
        sink = Sink(http, settings, Spool(tmp_path, 10_000_000), clock=lambda: 2000.0)
        send, receive = trio.open_memory_channel[list[Point]](10)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            await send.send(points(3))
            with trio.fail_after(30):
                while sink.stats.points_written < 3:
                    await trio.sleep(0.05)
            stats = sink.stats
            assert (stats.influx_up, stats.last_success_time) == (True, 2000.0)
            assert stats.oldest_unsent_seconds == 0.0
            nursery.cancel_scope.cancel()
