"""Restart cost: 1,000 accounts with keys stored; REST calls, key creations, time to subscribed."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from collector.keys import generate_master_key
from tests.bench.harness import collector, record, sim_server, wait_until
from tests.servers import influx_server

ACCOUNTS = 1000


def test_restart_cost(tmp_path: Path) -> None:
    master = generate_master_key()
    with (
        influx_server(tmp_path / "influx") as influx,
        sim_server(tmp_path / "sim", "--accounts", str(ACCOUNTS), "--push-interval", "5") as sim,
    ):
        config = f'max_connections_per_ip = 100000\n[influx]\nurl = "{influx.url}"\n'
        runs = []
        for _ in range(2):
            before = Counter(sim.stats()["calls"])
            start = time.monotonic()
            with collector(tmp_path / "collector", sim, config, master):
                done = wait_until(
                    lambda: sim.stats()["subscribed"] >= 2 * ACCOUNTS, timeout=600, interval=0.1
                )
            wait_until(lambda: sim.stats()["subscribed"] == 0, timeout=120)
            calls = Counter(sim.stats()["calls"]) - before
            runs.append((done - start, calls))
    rows = []
    for name, (seconds, calls) in zip(
        ("first start (empty key store)", "restart"), runs, strict=True
    ):
        rest = sum(n for k, n in calls.items() if k != "keys_created")
        detail = ", ".join(f"{k} {n}" for k, n in sorted(calls.items()) if k != "keys_created")
        rows.append(f"| {name} | {seconds:.1f} | {rest} ({detail}) | {calls['keys_created']} |")
    record(
        "Restart cost",
        "\n".join(
            [
                f"{ACCOUNTS} enabled sub-accounts; time from process start until every session is "
                "subscribed to both channels (simulator without rate limiting).",
                "",
                "| run | seconds to all subscribed | REST calls | keys created |",
                "|---|---|---|---|",
                *rows,
            ]
        ),
    )
    assert runs[1][1]["keys_created"] == 0
