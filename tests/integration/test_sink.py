"""The sink against real InfluxDB 1.x and VictoriaMetrics, and a few canned edge cases."""

from __future__ import annotations

import gzip
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from collector.config import InfluxSettings
from collector.points.lineproto import Point
from collector.sink.policy import MAX_RETRY_AFTER
from collector.sink.spool import Spool
from collector.sink.writer import INTAKE_PAUSE, Sink
from collector.telemetry.stats import report_stats
from tests.helpers import detail_points, scalar, settings_for, wait_until
from tests.servers import InfluxServer, VictoriaMetrics, free_port, influx_server, victoria_metrics
from tests.sink_worker import first_report

FAST = (0.02, 0.2)  # backoff base and cap for tests against real servers


@pytest.fixture
def database(influxdb: InfluxServer) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    influxdb.create_database(name)
    return name


async def feed(sink: Sink, bundles: Iterator[list[Point]], *, until_written: int = 0) -> None:
    """Run the sink over the bundles, close the channel, wait for it to finish."""
    send, receive = trio.open_memory_channel[list[Point]](64)
    with trio.fail_after(900):  # generous: autojump tests wait out a capped Retry-After
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            async with send:
                for bundle in bundles:
                    await send.send(bundle)
                await wait_until(lambda: sink.stats.points_written >= until_written, 900)


# -- real InfluxDB ------------------------------------------------------------


async def test_every_point_is_read_back_exactly(
    influxdb: InfluxServer, database: str, http: httpx.AsyncClient
) -> None:
    sink = Sink(http, settings_for(influxdb.url, database), None)
    await feed(sink, detail_points(accounts=100, updates=100))
    assert sink.stats.points_written == 30_000
    count = scalar(influxdb, "SELECT count(available) FROM gate_unified_asset_detail", database)
    assert count == 30_000
    expected_sum = sum(
        u * 1000 + a + c / 10 for u in range(100) for a in range(100) for c in range(3)
    )
    total = scalar(influxdb, "SELECT sum(available) FROM gate_unified_asset_detail", database)
    assert total == pytest.approx(expected_sum, rel=1e-12)
    last = influxdb.query(
        "SELECT available, u FROM gate_unified_asset_detail "
        "WHERE account='100042' AND currency='ETH' ORDER BY time DESC LIMIT 1",
        db=database,
    )
    row = last["results"][0]["series"][0]["values"][0]  # type: ignore[index]
    assert row == [1_700_000_000_099, 99_042.1, 99]


async def test_v1_without_gzip_also_lands(
    influxdb: InfluxServer, database: str, http: httpx.AsyncClient
) -> None:
    sink = Sink(http, settings_for(influxdb.url, database, gzip=False), None)
    await feed(sink, detail_points(accounts=10, updates=10))
    assert scalar(influxdb, "SELECT count(u) FROM gate_unified_asset_detail", database) == 300


async def test_a_batch_with_one_bad_line_lands_the_good_ones(
    influxdb: InfluxServer, database: str, http: httpx.AsyncClient
) -> None:
    sink = Sink(http, settings_for(influxdb.url, database), None)
    good = [Point("m", (("k", str(i)),), {"f": float(i)}, 1000 + i) for i in range(10)]
    bad = Point("m", (("k", "0"),), {"f": "a string where a float was"}, 5000)
    await feed(sink, iter([good[:5]]))  # InfluxDB now knows f as a float
    with capture_logs() as logs:
        await feed(sink, iter([good[5:8], [bad], good[8:]]))
    assert scalar(influxdb, "SELECT count(f) FROM m", database) == 10
    assert sink.stats.points_rejected == 1
    assert sink.stats.points_written == 10
    rejected = [e for e in logs if e["event"] == "influx_partial_write"]
    assert len(rejected) == 1 and "field type conflict" in rejected[0]["answer"]
    assert rejected[0]["rejected"] == 1 and rejected[0]["series"] == ["m"]


async def test_413_splits_until_everything_lands(tmp_path: Path, http: httpx.AsyncClient) -> None:
    with influx_server(tmp_path / "small", max_body_size=8000) as small:
        small.create_database("split")
        settings = settings_for(small.url, "split", gzip=False, batch_size=2000)
        sink = Sink(http, settings, None)
        with capture_logs() as logs:
            await feed(sink, detail_points(accounts=50, updates=20))
        assert scalar(small, "SELECT count(u) FROM gate_unified_asset_detail", "split") == 3000
    assert sink.stats.points_written == 3000
    assert any(e["event"] == "influx_batch_split" for e in logs)


async def test_outage_spools_then_replays_everything(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    with influx_server(tmp_path / "flaky") as server:
        server.create_database("outage")
        spool = Spool(tmp_path / "spool", max_bytes=10**9)
        settings = settings_for(server.url, "outage", batch_size=300, buffer_limit=600)
        sink = Sink(http, settings, spool, backoff=FAST)
        send, receive = trio.open_memory_channel[list[Point]](64)
        bundles = list(detail_points(accounts=100, updates=30))  # 9,000 points
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            for bundle in bundles[:1000]:
                await send.send(bundle)
            await wait_until(lambda: sink.stats.points_written >= 3000)
            await trio.to_thread.run_sync(server.stop)
            for bundle in bundles[1000:]:
                await send.send(bundle)
            await wait_until(lambda: spool.points >= 4000)
            assert sink.stats.write_errors > 0
            await trio.to_thread.run_sync(server.start)
            await wait_until(lambda: not len(spool) and not sink.buffered_points)
            await send.aclose()
        count = scalar(server, "SELECT count(u) FROM gate_unified_asset_detail", "outage")
    assert count == 9000
    assert list((tmp_path / "spool").iterdir()) == []
    assert sink.stats.points_dropped == 0


async def test_a_killed_writer_leaves_a_spool_the_next_one_replays(
    tmp_path: Path, influxdb: InfluxServer, http: httpx.AsyncClient
) -> None:
    influxdb.create_database("crash")
    spool_dir = tmp_path / "spool"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.sink_worker",
            f"http://127.0.0.1:{free_port()}",
            str(spool_dir),
            "1000",
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    spooled = int(first_report(worker))
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert spooled >= 800

    spool = Spool(spool_dir, max_bytes=10**9)
    assert spool.points == spooled
    sink = Sink(http, settings_for(influxdb.url, "crash"), spool)
    send, receive = trio.open_memory_channel[list[Point]](1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.run, receive)
        await wait_until(lambda: not len(spool))
        await send.aclose()
    assert scalar(influxdb, "SELECT count(i) FROM crash", "crash") == spooled


async def test_shutdown_with_influxdb_down_spools_everything(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10**9)
    settings = settings_for(f"http://127.0.0.1:{free_port()}", "gone", batch_size=100)
    sink = Sink(http, settings, spool, shutdown_timeout=0.5, backoff=FAST)
    await feed(sink, detail_points(accounts=10, updates=10))
    assert spool.points == 300
    assert sink.buffered_points == 0


async def test_cancellation_flushes_what_is_buffered(
    influxdb: InfluxServer, database: str, http: httpx.AsyncClient
) -> None:
    settings = settings_for(influxdb.url, database, batch_size=10_000, flush_interval=60.0)
    sink = Sink(http, settings, None)
    send, receive = trio.open_memory_channel[list[Point]](64)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.run, receive)
        for bundle in detail_points(accounts=10, updates=5):
            await send.send(bundle)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert scalar(influxdb, "SELECT count(u) FROM gate_unified_asset_detail", database) == 150


# -- v2 write API (VictoriaMetrics) ---------------------------------------------


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    with victoria_metrics(tmp_path_factory.mktemp("vm")) as server:
        yield server


def vm_sample_count(vm: VictoriaMetrics, metric: str) -> int:
    """Distinct (series, timestamp) samples: this VictoriaMetrics' export can list one
    sample twice right after a flush (seen on main too), and a point is its series+time."""
    response = httpx.get(f"{vm.url}/api/v1/export", params={"match[]": metric}, timeout=30)
    response.raise_for_status()
    samples = set()
    for line in response.content.splitlines():
        if line.strip():
            row = httpx.Response(200, content=line).json()
            series = tuple(sorted(row["metric"].items()))
            samples.update((series, ts) for ts in row["timestamps"])
    return len(samples)


async def test_v2_write_api_lands_in_victoria_metrics(
    victoria: VictoriaMetrics, http: httpx.AsyncClient
) -> None:
    settings = settings_for(victoria.url, "", api="v2", org="gate", bucket="gate", token="tkn")
    sink = Sink(http, settings, None)
    await feed(sink, detail_points(accounts=20, updates=10))
    assert sink.stats.points_written == 600
    httpx.get(f"{victoria.url}/internal/force_flush", timeout=10)
    with trio.fail_after(30):
        while vm_sample_count(victoria, "gate_unified_asset_detail_available") < 600:
            await trio.sleep(0.2)
    assert vm_sample_count(victoria, "gate_unified_asset_detail_available") == 600


# -- canned answers (httpx.MockTransport), trio's autojump clock ----------------


class Recorder:
    """A fake InfluxDB that answers from a script and records what it got."""

    def __init__(self, answers: list[httpx.Response] | None = None) -> None:
        self.answers = answers or []
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(trio.current_time())
        return self.answers.pop(0) if self.answers else httpx.Response(204)

    def lines(self, index: int) -> list[str]:
        body = self.requests[index].content
        if self.requests[index].headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body.decode().split("\n")


def mock_sink(
    recorder: Recorder, factory: Callable[[httpx.AsyncClient], Sink]
) -> tuple[httpx.AsyncClient, Callable[[httpx.AsyncClient], Sink]]:
    return httpx.AsyncClient(transport=httpx.MockTransport(recorder)), factory


async def run_mock(
    recorder: Recorder, settings: InfluxSettings, bundles: list[list[Point]], **kwargs: Any
) -> Sink:
    """Run the sink on canned answers until every point is written (steady state)."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        sink = Sink(http, settings, None, **kwargs)
        await feed(sink, iter(bundles), until_written=sum(map(len, bundles)))
    return sink


POINTS = [[Point("m", (), {"f": float(i)}, i)] for i in range(12)]


async def test_429_retry_after_and_503_are_waited_out(autojump_clock: Any) -> None:
    recorder = Recorder(
        [
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(503, text="overloaded"),
            httpx.Response(204),
        ]
    )
    settings = settings_for("http://influx.test", "db", batch_size=100)
    sink = await run_mock(recorder, settings, POINTS, backoff=(2.0, 10.0))
    assert len(recorder.requests) == 3
    assert recorder.times[1] - recorder.times[0] >= 7.0
    assert recorder.times[2] - recorder.times[1] >= 1.0  # half of the first backoff step
    assert recorder.lines(2) == recorder.lines(0)
    assert sink.stats.points_written == 12
    assert sink.stats.write_errors == 2


async def test_401_keeps_the_data_and_alarms(autojump_clock: Any) -> None:
    recorder = Recorder([httpx.Response(401, text="unauthorized")] * 3)
    settings = settings_for("http://influx.test", "db", batch_size=100)
    with capture_logs() as logs:
        sink = await run_mock(recorder, settings, POINTS)
    assert len(recorder.requests) == 4
    assert sink.stats.points_written == 12
    alarms = [e for e in logs if e["event"] == "influx_write_refused"]
    assert len(alarms) == 3 and alarms[0]["log_level"] == "error"


async def test_batches_are_cut_by_size_and_by_interval(autojump_clock: Any) -> None:
    recorder = Recorder()
    settings = settings_for("http://influx.test", "db", batch_size=5, flush_interval=1.0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        sink = Sink(http, settings, None)
        send, receive = trio.open_memory_channel[list[Point]](64)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            for bundle in POINTS:
                await send.send(bundle)
            await trio.sleep(INTAKE_PAUSE)  # taken once per pause, not each as it comes
            await trio.testing.wait_all_tasks_blocked()
            assert [len(recorder.lines(i)) for i in range(len(recorder.requests))] == [5, 5]
            await trio.sleep(1.5)
            assert len(recorder.requests) == 3 and len(recorder.lines(2)) == 2
            await send.aclose()


async def test_bundles_that_come_during_a_pause_are_taken_together_after_it(
    autojump_clock: Any,
) -> None:
    # One wake-up per pause, not per bundle (issue 16: a wake-up per update cost more
    # than the update when updates come one by one).
    settings = settings_for("http://influx.test", "db", batch_size=1000, flush_interval=60.0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(Recorder())) as http:
        sink = Sink(http, settings, None)
        send, receive = trio.open_memory_channel[list[Point]](64)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            await send.send(POINTS[0])  # idle: taken at once
            await trio.testing.wait_all_tasks_blocked()
            assert sink.buffered_points == 1
            for bundle in POINTS[1:4]:
                await send.send(bundle)
            await trio.testing.wait_all_tasks_blocked()
            assert (sink.buffered_points, receive.statistics().current_buffer_used) == (1, 3)
            await trio.sleep(INTAKE_PAUSE)
            await trio.testing.wait_all_tasks_blocked()
            assert (sink.buffered_points, receive.statistics().current_buffer_used) == (4, 0)
            await send.aclose()


async def test_v1_and_v2_requests_carry_their_parameters_and_credentials() -> None:
    recorder = Recorder()
    v1 = settings_for(
        "http://influx.test", "gate", retention_policy="autogen", username="writer", password="pw-1"
    )
    await run_mock(recorder, v1, POINTS[:1])
    v2 = settings_for("http://influx.test", "", api="v2", org="o", bucket="b", token="tok-1")
    await run_mock(recorder, v2, POINTS[:1])
    first, second = recorder.requests
    assert first.url.path == "/write"
    assert dict(first.url.params) == {"db": "gate", "rp": "autogen", "precision": "ms"}
    assert first.headers["Authorization"].startswith("Basic ")
    assert first.headers["Content-Encoding"] == "gzip"
    assert second.url.path == "/api/v2/write"
    assert dict(second.url.params) == {"org": "o", "bucket": "b", "precision": "ms"}
    assert second.headers["Authorization"] == "Token tok-1"


async def test_without_a_spool_overflow_is_dropped_and_counted(autojump_clock: Any) -> None:
    recorder = Recorder([httpx.Response(503)] * 1000)
    settings = settings_for("http://influx.test", "db", batch_size=2, buffer_limit=4)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        sink = Sink(http, settings, None, shutdown_timeout=0.1)
        with capture_logs():
            await feed(sink, iter(POINTS))
    assert sink.stats.points_dropped == 12


INFLUX_ERROR = '{"error":"unable to parse \'m f=\': missing field value"}'
NGINX_400 = "<html><body><h1>400 Bad Request</h1>nginx</body></html>"


async def test_422_with_influxdb_body_is_rejected_once_not_retried(autojump_clock: Any) -> None:
    recorder = Recorder([httpx.Response(422, text=INFLUX_ERROR)])
    settings = settings_for("http://influx.test", "db", batch_size=100)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        sink = Sink(http, settings, None)
        with capture_logs():
            await feed(sink, iter(POINTS[:4]))
    assert len(recorder.requests) == 1
    assert (sink.stats.points_rejected, sink.stats.points_written) == (4, 0)


async def test_400_with_influxdb_body_is_rejected_whole_not_split(autojump_clock: Any) -> None:
    recorder = Recorder([httpx.Response(400, text=INFLUX_ERROR)])
    settings = settings_for("http://influx.test", "db", batch_size=100)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        sink = Sink(http, settings, None)
        with capture_logs():
            await feed(sink, iter(POINTS[:4]))
    assert len(recorder.requests) == 1  # a 413 would have been split in halves
    assert (sink.stats.points_rejected, sink.stats.points_written) == (4, 0)


async def test_400_from_a_proxy_is_kept_whole_and_retried_not_split(autojump_clock: Any) -> None:
    recorder = Recorder([httpx.Response(400, text=NGINX_400), httpx.Response(400, text="")])
    settings = settings_for("http://influx.test", "db", batch_size=100)
    with capture_logs() as logs:
        sink = await run_mock(recorder, settings, POINTS)
    assert len(recorder.requests) == 3
    assert recorder.lines(0) == recorder.lines(1) == recorder.lines(2)
    assert len(recorder.lines(2)) == 12
    assert (sink.stats.points_written, sink.stats.points_rejected) == (12, 0)
    alarms = [e for e in logs if e["event"] == "influx_write_not_influx"]
    assert len(alarms) == 2 and "influx.url" in alarms[0]["hint"]


async def test_backoff_grows_between_failures(autojump_clock: Any) -> None:
    recorder = Recorder([httpx.Response(503)] * 6)
    settings = settings_for("http://influx.test", "db", batch_size=100)
    with capture_logs():
        await run_mock(recorder, settings, POINTS, backoff=(1.0, 1000.0), rng=random.Random(3))
    gaps = [b - a for a, b in zip(recorder.times, recorder.times[1:], strict=False)]
    assert len(gaps) == 6
    for n, gap in enumerate(gaps):  # equal jitter: within [ceiling/2, ceiling], ceiling 2^n
        assert 2**n / 2 <= gap <= 2**n + 0.5


async def test_a_huge_retry_after_is_capped(autojump_clock: Any) -> None:
    recorder = Recorder([httpx.Response(429, headers={"Retry-After": "86400"})])
    settings = settings_for("http://influx.test", "db", batch_size=100)
    with capture_logs():
        await run_mock(recorder, settings, POINTS)
    assert recorder.times[1] - recorder.times[0] == pytest.approx(MAX_RETRY_AFTER, abs=1.0)


async def test_the_spool_is_replayed_before_newer_points(
    tmp_path: Path, autojump_clock: Any
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10**9)
    spool.append(["m old=1i 1", "m old=2i 2"])
    (stored,) = [p.read_bytes() for p in (tmp_path / "spool").iterdir() if p.is_file()]
    recorder = Recorder()
    settings = settings_for("http://influx.test", "db", batch_size=100)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        sink = Sink(http, settings, spool, spool_in_thread=False)
        await feed(sink, iter(POINTS), until_written=14)
    assert recorder.lines(0) == ["m old=1i 1", "m old=2i 2"]
    assert recorder.requests[0].content == stored  # the spooled body, sent as stored
    assert len(spool) == 0


async def test_the_whole_spool_goes_before_points_that_arrive_during_its_replay(
    tmp_path: Path, autojump_clock: Any
) -> None:
    # Issue 10's "spool not replayed first": with newer batches already queued in
    # memory, the next write must still be the spool's oldest entry.
    spool = Spool(tmp_path / "spool", max_bytes=10**9)
    spool.append(["m old=1i 1"])
    spool.append(["m old=2i 2"])
    gate = trio.Event()
    bodies: list[list[str]] = []

    async def held_first(request: httpx.Request) -> httpx.Response:
        await gate.wait()  # the first spooled write hangs while newer points arrive
        body = request.content
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        bodies.append(body.decode().split("\n"))
        return httpx.Response(204)

    settings = settings_for("http://influx.test", "db", batch_size=2)
    async with httpx.AsyncClient(transport=httpx.MockTransport(held_first)) as http:
        sink = Sink(http, settings, spool, spool_in_thread=False)
        send, receive = trio.open_memory_channel[list[Point]](64)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sink.run, receive)
                await trio.testing.wait_all_tasks_blocked()  # spool entry 1 in flight
                for bundle in POINTS[:2]:
                    await send.send(bundle)
                await trio.sleep(INTAKE_PAUSE)  # the second is taken after the pause
                await trio.testing.wait_all_tasks_blocked()
                assert sink.buffered_points == 2  # a cut batch of two, queued in memory
                gate.set()
                await wait_until(lambda: sink.stats.points_written == 4)
                nursery.cancel_scope.cancel()
    assert [[line.split(" ")[1] for line in body] for body in bodies] == [
        ["old=1i"],
        ["old=2i"],
        ["f=0", "f=1"],
    ]
    assert len(spool) == 0


async def test_overflow_spools_the_oldest_and_keeps_the_newest(
    tmp_path: Path, autojump_clock: Any
) -> None:
    gate = trio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        await gate.wait()  # InfluxDB hangs: the first batch stays in flight
        return httpx.Response(204)

    spool = Spool(tmp_path / "spool", max_bytes=10**9)
    settings = settings_for("http://influx.test", "db", batch_size=2, buffer_limit=4)
    async with httpx.AsyncClient(transport=httpx.MockTransport(held)) as http:
        sink = Sink(http, settings, spool, spool_in_thread=False)
        send, receive = trio.open_memory_channel[list[Point]](64)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            for bundle in POINTS[:2]:
                await send.send(bundle)
            await trio.testing.wait_all_tasks_blocked()  # batch 0 (points 0, 1) in flight
            for bundle in POINTS[2:10]:
                await send.send(bundle)
            await wait_until(lambda: spool.points == 6)
            assert sink.buffered_points == 4  # in flight and the newest batch
            spooled = []
            while (entry := spool.peek()) is not None:
                loaded = spool.load(entry)
                assert loaded is not None
                spooled.append(loaded.lines)
                spool.remove(entry)
            nursery.cancel_scope.cancel()
    # past buffer_limit (4) the oldest queued batches went to disk, one by one
    assert [[line.split(" ")[1] for line in lines] for lines in spooled] == [
        ["f=2", "f=3"],
        ["f=4", "f=5"],
        ["f=6", "f=7"],
    ]


async def test_during_an_outage_everything_reaches_the_spool_within_spool_after(
    tmp_path: Path, autojump_clock: Any
) -> None:
    recorder = Recorder([httpx.Response(503)] * 10_000)
    spool = Spool(tmp_path / "spool", max_bytes=10**9)
    settings = settings_for(
        "http://influx.test", "db", batch_size=5, flush_interval=1.0, spool_after=3.0
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        sink = Sink(http, settings, spool, backoff=(0.5, 10.0), spool_in_thread=False)
        send, receive = trio.open_memory_channel[list[Point]](64)
        with capture_logs():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sink.run, receive)
                for bundle in POINTS:
                    await send.send(bundle)
                start = trio.current_time()
                await wait_until(lambda: spool.points == 12 and sink.buffered_points == 0)
                took = trio.current_time() - start
                nursery.cancel_scope.cancel()
    assert took <= 3.0 + 1.0  # spool_after + one flush
    assert sink.stats.points_dropped == 0


async def test_collector_stats_go_through_the_channel_like_any_point(
    autojump_clock: Any,
) -> None:
    recorder = Recorder()
    settings = settings_for("http://influx.test", "db", batch_size=100, flush_interval=1.0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        sink = Sink(http, settings, None)
        send, receive = trio.open_memory_channel[list[Point]](64)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            stats_scope = trio.CancelScope()

            async def stats() -> None:
                with stats_scope:
                    await report_stats(
                        send.clone(),
                        [lambda: {"sessions_total": 7}, sink.counters],
                        instance="box-1",
                        shard="2/4",
                        interval=10.0,
                    )

            nursery.start_soon(stats)
            await send.send(POINTS[0])
            await trio.sleep(12)
            stats_scope.cancel()
            await send.aclose()
    lines = [line for i in range(len(recorder.requests)) for line in recorder.lines(i)]
    stats_lines = [line for line in lines if line.startswith("collector_stats,")]
    assert len(stats_lines) == 1, lines
    assert stats_lines[0].startswith("collector_stats,instance=box-1,shard=2/4 ")
    for name in (
        "points_written=1i",
        "points_dropped=0i",
        "points_rejected=0i",
        "buffer_size=0i",
        "spool_bytes=0i",
        "write_errors=0i",
        "write_time_ms=",
        "sessions_total=7i",
    ):
        assert name in stats_lines[0]
