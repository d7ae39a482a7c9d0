"""Sessions per process: idle TLS sessions with pings, RSS and idle CPU, against the floor."""

from __future__ import annotations

import os
import time
from pathlib import Path

from collector.keys import generate_master_key
from tests.bench.harness import (
    collector,
    cpu_seconds,
    record,
    rss_bytes,
    run_python,
    sim_server,
    wait_until,
)
from tests.servers import influx_server

SIZES = [int(n) for n in os.environ.get("BENCH_SESSIONS", "1000,5000,10000").split(",")]
SETTLE, IDLE = 5.0, 10.0
MB = 1024 * 1024


def measure_collector(tmp: Path, sessions: int, influx_url: str) -> dict[str, float]:
    with sim_server(
        tmp / "sim", "--accounts", str(sessions), "--push-interval", "100000", "--tls"
    ) as sim:
        config = (
            f'ca_file = "{sim.directory / "ca.pem"}"\nmax_connections_per_ip = 100000\n'
            f'[influx]\nurl = "{influx_url}"\n'
        )
        with collector(tmp / "collector", sim, config, generate_master_key()) as process:
            wait_until(
                lambda: sim.stats()["subscribed"] >= 2 * sessions, timeout=1200, interval=0.5
            )
            time.sleep(SETTLE)
            cpu, wall = cpu_seconds(process.pid), time.monotonic()
            time.sleep(IDLE)
            idle = (cpu_seconds(process.pid) - cpu) / (time.monotonic() - wall)
            return {"rss": rss_bytes(process.pid), "idle_cpu": idle}


def measure_floor(tmp: Path, sessions: int) -> dict[str, float]:
    with sim_server(
        tmp / "sim-floor", "--accounts", str(sessions), "--push-interval", "100000", "--tls"
    ) as sim:
        return run_python(
            "tests.bench.idle_floor",
            "--url",
            sim.ws_url,
            "--keys",
            str(sim.directory / "keys.json"),
            "--ca",
            str(sim.directory / "ca.pem"),
            "--sessions",
            str(sessions),
            "--settle",
            str(SETTLE),
            "--idle",
            str(IDLE),
        )


def test_sessions_per_process(tmp_path: Path) -> None:
    rows: list[str] = []
    marginal: list[str] = []
    previous: tuple[int, dict[str, float], dict[str, float]] | None = None
    with influx_server(tmp_path / "influx") as influx:
        for n in SIZES:
            ours = measure_collector(tmp_path / f"c{n}", n, influx.url)
            floor = measure_floor(tmp_path / f"f{n}", n)
            if previous is not None:
                m, our_before, floor_before = previous
                ours_marginal = (ours["rss"] - our_before["rss"]) / (n - m)
                floor_marginal = (floor["rss"] - floor_before["rss"]) / (n - m)
                marginal.append(
                    f"| {m:,} -> {n:,} | {ours_marginal / 1024:,.1f} KiB | "
                    f"{floor_marginal / 1024:,.1f} KiB | {ours_marginal / floor_marginal:.2f} |"
                )
            previous = (n, ours, floor)
            rows.append(
                f"| {n:,} | {ours['rss'] / MB:,.0f} MiB | {ours['rss'] / n / 1024:,.1f} KiB | "
                f"{ours['idle_cpu'] * 100:.1f} % | {floor['rss'] / MB:,.0f} MiB | "
                f"{floor['rss'] / n / 1024:,.1f} KiB | {floor['idle_cpu'] * 100:.1f} % | "
                f"{ours['rss'] / floor['rss']:.2f} |"
            )
    record(
        "Sessions per process",
        "\n".join(
            [
                "Idle TLS sessions (both channels subscribed, `unified.ping` every 15 s, the "
                "simulator pushing nothing); RSS and CPU of the collector process vs a floor of "
                "bare trio-websocket TLS connections doing the same. Goals: RSS per session "
                "at most 1.5x the floor's; 10,000 sessions in under 1 GiB.",
                "",
                "| sessions | collector RSS | per session | idle CPU | floor RSS | per session | "
                "floor idle CPU | RSS ratio |",
                "|---|---|---|---|---|---|---|---|",
                *rows,
                "",
                "Each figure above carries the process's fixed cost (interpreter, libraries, "
                "the REST provisioning before); what one more session costs:",
                "",
                "| sessions | collector RSS per added session | floor | ratio |",
                "|---|---|---|---|",
                *marginal,
            ]
        ),
    )
