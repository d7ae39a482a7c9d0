"""Points/s the sink alone writes to a real InfluxDB 1.x (one run, gzip on and off)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import trio

from collector.config import InfluxSettings
from collector.points.lineproto import Point, float_text
from collector.sink.writer import Sink
from tests.bench.harness import record
from tests.servers import influx_server

ACCOUNTS, UPDATES = 200, 250  # 3 points per update: 150,000 points


def bundles() -> list[list[Point]]:
    return [
        [
            Point(
                "gate_unified_asset_detail",
                (("account", str(100_000 + a)), ("account_label", f"sub-{a}"), ("currency", c)),
                {
                    "available": float_text(f"{u}.{a:06d}"),
                    "freeze": float_text("0.000000"),
                    "equity": float_text(f"{u + 1}.5"),
                    "u": u,
                    "refresh_time": 1_716_796_364,
                },
                1_716_796_000_000 + u,
            )
            for c in ("BTC", "ETH", "USDT")
        ]
        for u in range(UPDATES)
        for a in range(ACCOUNTS)
    ]


async def write_all(url: str, database: str, gzip: bool, data: list[list[Point]]) -> float:
    settings = InfluxSettings(url=url, database=database, gzip=gzip, flush_interval=0.2)
    async with httpx.AsyncClient(timeout=30) as http:
        sink = Sink(http, settings, None)
        send, receive = trio.open_memory_channel[list[Point]](1024)
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            async with send:
                for bundle in data:
                    await send.send(bundle)
        elapsed = time.perf_counter() - start
    assert sink.stats.points_written == len(data) * 3
    return len(data) * 3 / elapsed


def test_sink_throughput(tmp_path: Path) -> None:
    data = bundles()
    with influx_server(tmp_path / "influx") as server:
        rates = {}
        for gzip in (True, False):
            db = f"bench_{int(gzip)}"
            server.create_database(db)
            rates[gzip] = trio.run(write_all, server.url, db, gzip, data)
            count = server.query("SELECT count(u) FROM gate_unified_asset_detail", db=db)
            assert count["results"][0]["series"][0]["values"][0][1] == len(data) * 3  # type: ignore[index]
    record(
        "Sink throughput",
        f"The sink alone -> InfluxDB 1.x on loopback, {len(data) * 3} points, batch 5000:\n\n"
        f"| body | points/s |\n|---|---|\n"
        f"| gzip | {rates[True]:,.0f} |\n| plain | {rates[False]:,.0f} |\n\n"
        f"ratio gzip/plain: {rates[True] / rates[False]:.2f}",
    )
