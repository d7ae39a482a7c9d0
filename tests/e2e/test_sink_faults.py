"""Fault runs of the sink: kill -9 during an outage, a full disk, bad spool files, a lying proxy.

Each uses the real InfluxDB 1.x; nothing is mocked. What must hold: every point
is either in InfluxDB or counted as dropped (once, with a reason), and the
process never dies of it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio
from structlog.testing import capture_logs

from collector.points.lineproto import Point
from collector.sink.request import write_request
from collector.sink.spool import REASON_CORRUPT, REASON_DISK, Spool
from collector.sink.writer import Sink
from tests.helpers import detail_points, mounted_tmpfs, scalar, settings_for, wait_until
from tests.servers import InfluxServer, free_port, hanging_server
from tests.sink_worker import (
    STREAM_BASE_MS,
    STREAM_FLUSH,
    STREAM_SERIES,
    first_line,
    fork_server,
    forked_stream,
)

FAST = (0.02, 0.2)


@contextlib.contextmanager
def influx_on(root: Path, port: int) -> Iterator[InfluxServer]:
    """A real InfluxDB on a port chosen beforehand (the sink's URL exists before it does)."""
    root.mkdir(parents=True, exist_ok=True)
    server = InfluxServer(root, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def run_sink_until(
    sink: Sink, bundles: list[list[Point]], done: Any, deadline: float = 120.0
) -> None:
    """Feed ``bundles``, wait for ``done()``, close the channel and let the sink finish."""
    send, receive = trio.open_memory_channel[list[Point]](64)
    with trio.fail_after(deadline):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            async with send:
                for bundle in bundles:
                    await send.send(bundle)
                await wait_until(done, deadline)


# -- kill -9 during an outage, KILLS times --------------------------------------------

SPOOL_AFTER = 0.3
KILLS = int(os.environ.get("SINK_KILLS", "20"))
# A kill lands at any byte; what was sent more than spool_after + one flush before it
# must be on disk. The slack covers the worker thread's fsync on a shared 2-core box.
SLACK = 0.25


def kill_at_random(
    control: socket.socket, spool_dir: Path, run: str, wait: float, url: str
) -> list[tuple[int, float]]:
    """Fork a streaming worker (InfluxDB at ``url`` down or hanging), SIGKILL it after
    ``wait`` s; its reports."""
    with forked_stream(control, url, spool_dir, run, SPOOL_AFTER) as (pid, reports):
        first = first_line(reports)  # it runs: now the clock of the kill starts
        time.sleep(wait)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        rest = reports.read()  # to its end: the worker and its spool thread are gone
    sent = []
    # Only whole lines: the kill may tear the last one ("123 45" of "123 4567.8").
    for line in [first, *rest.split(b"\n")[:-1]]:
        u, at = line.split()
        sent.append((int(u), float(at)))
    return [(u, at) for u, at in sent if at < killed_at - SPOOL_AFTER - STREAM_FLUSH - SLACK]


@pytest.mark.parametrize("outage", ["down", "hanging"])
async def test_kill_9_during_an_outage_loses_nothing_older_than_spool_after(
    tmp_path: Path, influxdb: InfluxServer, http: httpx.AsyncClient, outage: str
) -> None:
    rng = random.Random(20261121)
    spool_dir = tmp_path / "spool"
    must_have: dict[str, int] = {}
    with hanging_server() as hanging, fork_server() as control:  # hanging: never answers
        url = hanging.url if outage == "hanging" else f"http://127.0.0.1:{free_port()}"
        for kill in range(KILLS):
            old_enough = await trio.to_thread.run_sync(
                kill_at_random, control, spool_dir, f"r{kill}", rng.uniform(0.4, 1.4), url
            )
            if old_enough:
                must_have[f"r{kill}"] = max(u for u, _ in old_enough)
    assert len(must_have) >= KILLS // 2, "the kills came too early to prove anything"

    influxdb.create_database(f"crash_{outage}")
    spool = Spool(spool_dir, max_bytes=10**9)  # a restart: what the killed ones left
    sink = Sink(http, settings_for(influxdb.url, f"crash_{outage}"), spool, backoff=FAST)
    await run_sink_until(sink, [], lambda: len(spool) == 0)
    assert sink.stats.points_dropped == 0
    for run, last in must_have.items():
        for series in range(STREAM_SERIES):
            count = scalar(
                influxdb,
                f"SELECT count(u) FROM stream WHERE run='{run}' AND \"series\"='{series}' "
                f"AND time <= {(STREAM_BASE_MS + last) * 1_000_000}",
                f"crash_{outage}",
            )
            assert count == last + 1, (run, series, last)


# -- a full disk under the spool ------------------------------------------------------


def noisy_points(start: int, count: int) -> list[list[Point]]:
    """Points with an incompressible field, so spool files are big."""
    rng = random.Random(start)
    return [
        [Point("disk", (("k", str(i % 7)),), {"i": i, "pad": rng.randbytes(48).hex()}, 10**6 + i)]
        for i in range(start, start + count)
    ]


async def test_a_full_disk_drops_the_oldest_counts_them_and_recovers(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    port = free_port()
    with mounted_tmpfs(tmp_path / "disk", "256k") as disk:
        filler = disk / "filler"
        filler.write_bytes(os.urandom(160 * 1024))  # someone else's file fills the disk
        spool = Spool(disk / "spool", max_bytes=10**9)
        settings = settings_for(f"http://127.0.0.1:{port}", "disk", batch_size=100, spool_after=0.2)
        sink = Sink(http, settings, spool, backoff=FAST)
        send, receive = trio.open_memory_channel[list[Point]](64)
        with capture_logs() as logs, trio.fail_after(180):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sink.run, receive)
                for bundle in noisy_points(0, 3000):
                    await send.send(bundle)
                await wait_until(lambda: sink.drops()[REASON_DISK] > 0)
                await wait_until(lambda: sink.buffered_points == 0)
                filler.unlink()  # space comes back
                for bundle in noisy_points(3000, 600):
                    await send.send(bundle)
                # A sent bundle may still wait in the channel, or in the spool's worker
                # thread: wait for the sum itself (each point in one place), not a proxy.
                await wait_until(
                    lambda: (
                        sink.buffered_points == 0
                        and spool.points + sink.stats.points_dropped == 3600
                    )
                )
                dropped_while_full = sink.stats.points_dropped
                assert spool.points + dropped_while_full == 3600  # each point in one place
                with influx_on(tmp_path / "influx", port) as server:
                    server.create_database("disk")
                    await wait_until(lambda: len(spool) == 0 and sink.buffered_points == 0)
                    await send.aclose()
                    landed = scalar(server, "SELECT count(i) FROM disk", "disk")
                    newest = scalar(server, "SELECT count(i) FROM disk WHERE i >= 3000", "disk")
    assert dropped_while_full > 0
    assert sink.drops() == {REASON_DISK: dropped_while_full}
    assert landed + dropped_while_full == 3600  # every point counted once: landed or dropped
    assert newest == 600  # after the space came back nothing was lost
    assert any(e["event"] == "points_dropped" and e["reason"] == REASON_DISK for e in logs)


# -- bad spool files -------------------------------------------------------------------


async def test_garbled_truncated_and_empty_spool_files_are_set_aside_and_counted(
    tmp_path: Path, influxdb: InfluxServer, http: httpx.AsyncClient
) -> None:
    spool_dir = tmp_path / "spool"
    first = Spool(spool_dir, max_bytes=10**9)
    for batch in range(6):
        first.append([f"bad,b={batch} i={i}i {10**6 + batch * 100 + i}" for i in range(50)])
    names = sorted(p.name for p in spool_dir.iterdir())
    (spool_dir / names[1]).write_bytes(b"this is not gzip at all")
    good = (spool_dir / names[2]).read_bytes()
    (spool_dir / names[2]).write_bytes(good[: len(good) // 3])
    (spool_dir / names[4]).write_bytes(b"")
    influxdb.create_database("bad")
    spool = Spool(spool_dir, max_bytes=10**9)
    sink = Sink(http, settings_for(influxdb.url, "bad"), spool, backoff=FAST)
    fresh = [[Point("bad", (("b", "new"),), {"i": i}, 2 * 10**6 + i)] for i in range(100)]
    with capture_logs() as logs:
        await run_sink_until(sink, fresh, lambda: sink.stats.points_written == 250)
    assert scalar(influxdb, "SELECT count(i) FROM bad", "bad") == 250  # 3 good files + fresh
    assert sink.drops() == {REASON_CORRUPT: 150}
    assert sink.stats.points_dropped == 150
    named = [Path(e["file"]).name for e in logs if e["event"] == "spool_file_unreadable"]
    assert sorted(named) == [names[1], names[2], names[4]]  # each named once
    assert sorted(p.name for p in (spool_dir / "corrupt").iterdir()) == sorted(named)
    assert [p.name for p in spool_dir.iterdir()] == ["corrupt"]


# -- a proxy that answers 400 with HTML, then forwards -----------------------------------


class LyingProxy:
    """A loopback HTTP proxy (h11) that answers its first ``lies`` requests with a 400 that
    InfluxDB would never send (nginx HTML or an empty body), then forwards to ``upstream``."""

    def __init__(self, upstream: str, lies: int) -> None:
        self.upstream = upstream
        self.lies = lies
        self.lied = 0
        self.forwarded = 0
        self.port = 0

    async def serve(self, nursery: trio.Nursery) -> None:
        serve = functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        self.port = listeners[0].socket.getsockname()[1]

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream, httpx.AsyncClient(timeout=30) as upstream:
            while True:
                request, body = await self._read(conn, stream)
                if request is None:
                    return
                status, headers, content = await self._answer(upstream, request, body)
                headers.append((b"content-length", str(len(content)).encode()))
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
                await stream.send_all(conn.send(h11.Data(data=content)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()

    @staticmethod
    async def _read(
        conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            else:  # closed
                return None, b""

    async def _answer(
        self, upstream: httpx.AsyncClient, request: h11.Request, body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if self.lied < self.lies:
            self.lied += 1
            html = b"<html><body><center><h1>400 Bad Request</h1></center>nginx</body></html>"
            content = html if self.lied % 2 else b""
            return 400, [(b"content-type", b"text/html")], content
        self.forwarded += 1
        keep = {b"content-type", b"content-encoding", b"authorization"}
        response = await upstream.request(
            request.method.decode(),
            self.upstream + request.target.decode(),
            headers=[(k, v) for k, v in request.headers if k.lower() in keep],
            content=body,
        )
        return response.status_code, [(b"content-type", b"application/json")], response.content


@contextlib.asynccontextmanager
async def lying_proxy(upstream: str, lies: int) -> AsyncIterator[LyingProxy]:
    async with trio.open_nursery() as nursery:
        proxy = LyingProxy(upstream, lies)
        await proxy.serve(nursery)
        yield proxy
        nursery.cancel_scope.cancel()


async def test_a_proxy_answering_400_html_loses_nothing(
    influxdb: InfluxServer, http: httpx.AsyncClient
) -> None:
    influxdb.create_database("proxied")
    async with lying_proxy(influxdb.url, lies=6) as proxy:
        settings = settings_for(f"http://127.0.0.1:{proxy.port}", "proxied", batch_size=500)
        assert write_request(settings).url.startswith(f"http://127.0.0.1:{proxy.port}")
        sink = Sink(http, settings, None, backoff=FAST)
        bundles = list(detail_points(accounts=50, updates=20))  # 3,000 points
        with capture_logs() as logs:
            await run_sink_until(sink, bundles, lambda: sink.stats.points_written == 3000)
    assert proxy.lied == 6 and proxy.forwarded >= 6
    assert sink.stats.points_rejected == 0
    assert scalar(influxdb, "SELECT count(u) FROM gate_unified_asset_detail", "proxied") == 3000
    alarms = [e for e in logs if e["event"] == "influx_write_not_influx"]
    assert len(alarms) == 6
    assert all(e["log_level"] == "error" and "influx.url" in e["hint"] for e in alarms)
