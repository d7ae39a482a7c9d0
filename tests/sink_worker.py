"""A sink in its own process, for the crash tests: spools, reports, waits to be killed.

``sink_worker URL SPOOL COUNT``: sends COUNT points, prints how many are spooled.
``sink_worker URL SPOOL stream RUN SPOOL_AFTER``: sends one update (3 series) every
few ms forever, printing ``<u> <monotonic time>`` after each is in the sink.
"""

from __future__ import annotations

import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trio

from collector.base import logging
from collector.config import InfluxSettings
from collector.points.lineproto import Point
from collector.sink.spool import Spool
from collector.sink.writer import Sink

STREAM_BASE_MS = 1_600_000_000_000
STREAM_SERIES = 3
STREAM_FLUSH = 0.05
# The parent's wait for a worker's first report: its own poll gives up after 30 s.
REPORT_DEADLINE = 60.0


def first_report(worker: subprocess.Popen[bytes], deadline: float = REPORT_DEADLINE) -> bytes:
    """The worker's first line, read with a deadline (the worker is killed if it is silent)."""
    assert worker.stdout is not None
    ready, _, _ = select.select([worker.stdout], [], [], deadline)
    if not ready:
        worker.kill()
        worker.wait()
        raise AssertionError(f"the sink worker said nothing in {deadline} s")
    return worker.stdout.readline()


async def main(influx_url: str, spool_dir: Path, count: int) -> None:
    settings = InfluxSettings(
        url=influx_url, database="crash", batch_size=100, buffer_limit=100, flush_interval=0.05
    )
    spool = Spool(spool_dir, max_bytes=10**9)
    send, receive = trio.open_memory_channel[list[Point]](100)
    async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
        sink = Sink(http, settings, spool, backoff=(0.05, 0.2))
        nursery.start_soon(sink.run, receive)
        for i in range(count):
            await send.send([Point("crash", (("k", "v"),), {"i": i}, 1_000_000 + i)])
        with trio.fail_after(30):
            while sink.buffered_points > 200:  # the rest is on its way to the spool
                await trio.sleep(0.01)
        await trio.sleep(0.2)
        print(spool.points, flush=True)
        await trio.sleep_forever()


def update(run: str, u: int) -> list[Point]:
    """Update ``u`` of run ``run``: one point per series, ``u`` as field and time offset."""
    return [
        Point("stream", (("run", run), ("series", str(s))), {"u": u}, STREAM_BASE_MS + u)
        for s in range(STREAM_SERIES)
    ]


async def stream(influx_url: str, spool_dir: Path, run: str, spool_after: float) -> None:
    settings = InfluxSettings(
        url=influx_url,
        database="crash",
        batch_size=60,
        flush_interval=STREAM_FLUSH,
        flush_jitter=0.0,
        spool_after=spool_after,
    )
    spool = Spool(spool_dir, max_bytes=10**9)
    send, receive = trio.open_memory_channel[list[Point]](100)
    async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
        sink = Sink(http, settings, spool, backoff=(0.02, 0.1))
        nursery.start_soon(sink.run, receive)
        u = 0
        while True:
            await send.send(update(run, u))
            print(u, time.monotonic(), flush=True)
            u += 1
            await trio.sleep(0.005)


if __name__ == "__main__":
    logging.configure("critical", stream=sys.stderr)
    url, directory = sys.argv[1], Path(sys.argv[2])
    if sys.argv[3] == "stream":
        trio.run(stream, url, directory, sys.argv[4], float(sys.argv[5]))
    else:
        trio.run(main, url, directory, int(sys.argv[3]))
