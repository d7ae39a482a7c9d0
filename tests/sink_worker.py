"""A sink in its own process, for the crash test: spools, reports, waits to be killed."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import trio

from collector import logging
from collector.config import InfluxSettings
from collector.points.lineproto import Point
from collector.sink.spool import Spool
from collector.sink.writer import Sink


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


if __name__ == "__main__":
    logging.configure("warning", stream=sys.stderr)
    trio.run(main, sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
