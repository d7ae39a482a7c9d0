"""Latency: from the simulator's send to the point being queryable in InfluxDB."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from collector.keys import generate_master_key
from tests.bench.harness import collector, record, sim_server, wait_until
from tests.servers import influx_server

ACCOUNTS = 100
PUSH_INTERVAL = 1.0  # per account and channel: 100 asset_detail updates/s in all
FLUSH_INTERVAL = 1.0
SECONDS = 30.0
POLL = 0.02


def test_latency(tmp_path: Path) -> None:
    seen: dict[tuple[str, int], float] = {}
    with (
        influx_server(tmp_path / "influx") as influx,
        sim_server(
            tmp_path / "sim", "--accounts", str(ACCOUNTS), "--push-interval", str(PUSH_INTERVAL)
        ) as sim,
    ):
        influx.create_database("latency")
        config = (
            f'[influx]\nurl = "{influx.url}"\ndatabase = "latency"\n'
            f"flush_interval = {FLUSH_INTERVAL}\nflush_jitter = 0.0\n"
        )
        with collector(tmp_path / "collector", sim, config, generate_master_key()):
            wait_until(lambda: sim.stats()["subscribed"] >= 2 * ACCOUNTS, timeout=120)
            start_ms = int(time.time() * 1000) + 2000  # skip the connection ramp
            deadline = time.monotonic() + SECONDS
            while time.monotonic() < deadline:
                body = influx.query(
                    'SELECT "u" FROM "gate_unified_asset_detail" '
                    f"WHERE currency='BTC' AND time > {start_ms}ms GROUP BY account",
                    db="latency",
                )
                now = time.time()
                for series in body["results"][0].get("series", []):  # type: ignore[index]
                    account = series["tags"]["account"]
                    for stamp, _u in series["values"]:
                        seen.setdefault((account, stamp), now)
                time.sleep(POLL)
    latencies = sorted(arrived - stamp / 1000 for (_, stamp), arrived in seen.items())
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    record(
        "Latency",
        "\n".join(
            [
                f"{ACCOUNTS} accounts, one asset_detail update per account per "
                f"{PUSH_INTERVAL:g} s, `flush_interval` {FLUSH_INTERVAL:g} s; send time is "
                "the frame's `time_ms`, arrival is the first InfluxDB query "
                f"(every {POLL * 1000:.0f} ms) that returns the point.",
                "",
                "| updates measured | p50 | p99 | goal p99 |",
                "|---|---|---|---|",
                f"| {len(latencies)} | {p50 * 1000:.0f} ms | {p99 * 1000:.0f} ms | "
                f"<= {(FLUSH_INTERVAL + 0.25) * 1000:.0f} ms |",
            ]
        ),
    )
    assert len(latencies) > SECONDS * ACCOUNTS / PUSH_INTERVAL / 2
