"""Sessions per process: idle TLS sessions with pings, RSS and idle CPU, against the floor."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from collector.keys import generate_master_key
from tests.bench.feeder import raise_fd_limit
from tests.bench.harness import (
    Load,
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
SETTLE = float(os.environ.get("BENCH_SESSIONS_SETTLE", "5"))
IDLE = float(os.environ.get("BENCH_SESSIONS_IDLE", "30"))  # two ping rounds at 15 s
MB = 1024 * 1024
MACHINE_BYTES = 24 * 1024**3

# Two sockets per session on this machine (the collector's and the simulator's end).
raise_fd_limit(2 * max(SIZES) + 1024)
pytestmark = pytest.mark.timeout(3600)


def measure_collector(tmp: Path, sessions: int, influx_url: str) -> dict[str, float]:
    with sim_server(
        tmp / "sim", "--accounts", str(sessions), "--push-interval", "100000", "--tls"
    ) as sim:
        # Sessions only: the one REST snapshot each subscribe asks for is let through
        # fast and waited for; no periodic snapshots in the window (the floor has none).
        config = (
            f'ca_file = "{sim.directory / "ca.pem"}"\nmax_connections_per_ip = 100000\n'
            "[accounts]\nsnapshot_interval = 0\nsnapshot_rate = 200\n"
            f'[influx]\nurl = "{influx_url}"\n'
        )
        started = time.monotonic()
        with collector(tmp / "collector", sim, config, generate_master_key()) as process:
            wait_until(
                lambda: sim.stats()["subscribed"] >= 2 * sessions, timeout=1200, interval=0.5
            )
            wait_until(
                lambda: sim.stats()["calls"].get("GET unified_accounts", 0) >= sessions,
                timeout=1200,
                interval=0.5,
            )
            up = time.monotonic() - started  # keys, connections, subscribes, snapshots
            time.sleep(SETTLE)
            cpu, wall = cpu_seconds(process.pid), time.monotonic()
            time.sleep(IDLE)
            idle = (cpu_seconds(process.pid) - cpu) / (time.monotonic() - wall)
            return {
                "rss": rss_bytes(process.pid),
                "idle_cpu": idle,
                "sim_rss": rss_bytes(sim.process.pid),
                "start": up,
            }


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
    load = Load.now()
    rows: list[str] = []
    goals: list[str] = []
    marginal: list[str] = []
    previous: tuple[int, dict[str, float], dict[str, float]] | None = None
    with influx_server(tmp_path / "influx") as influx:
        for n in SIZES:
            ours = measure_collector(tmp_path / f"c{n}", n, influx.url)
            print(f"\n{n} sessions, collector: {ours}", flush=True)
            floor = measure_floor(tmp_path / f"f{n}", n)
            print(f"{n} sessions, floor: {floor}", flush=True)
            if previous is not None:
                m, our_before, floor_before = previous
                ours_marginal = (ours["rss"] - our_before["rss"]) / (n - m)
                floor_marginal = (floor["rss"] - floor_before["rss"]) / (n - m)
                marginal.append(
                    f"| {m:,} -> {n:,} | {ours_marginal / 1024:,.1f} KiB | "
                    f"{floor_marginal / 1024:,.1f} KiB | {ours_marginal / floor_marginal:.2f} |"
                )
            previous = (n, ours, floor)
            if n == max(SIZES):
                goals += goal_lines(n, ours, floor, marginal)
            rows.append(
                f"| {n:,} | {ours['rss'] / MB:,.0f} MiB | {ours['rss'] / n / 1024:,.1f} KiB | "
                f"{ours['idle_cpu'] * 100:.1f} % | {floor['rss'] / MB:,.0f} MiB | "
                f"{floor['rss'] / n / 1024:,.1f} KiB | {floor['idle_cpu'] * 100:.1f} % | "
                f"{ours['rss'] / floor['rss']:.2f} | "
                f"{ours['start']:,.0f} s / {floor['start']:,.0f} s |"
            )
    record(
        "Sessions per process",
        "\n".join(
            [
                "Idle TLS sessions (both channels subscribed, `unified.ping` every 15 s, the "
                "simulator pushing nothing); RSS and CPU of the collector process vs a floor of "
                "bare trio-websocket TLS connections doing the same, CPU over "
                f"{IDLE:g} s after a {SETTLE:g} s settle (the collector's start-up snapshots "
                "done first; no periodic snapshots). Start-up: from the process's start until "
                "every session is subscribed (the collector: keys created over REST, connected, "
                "subscribed, one start-up snapshot each). Goals (issue 16): at the largest size, "
                "collector CPU <= the floor's, RSS per session <= 1.3x the floor's.",
                "",
                "| sessions | collector RSS | per session | idle CPU | floor RSS | per session | "
                "floor idle CPU | RSS ratio | start-up (collector / floor) |",
                "|---|---|---|---|---|---|---|---|---|",
                *rows,
                "",
                "Each figure above carries the process's fixed cost (interpreter, libraries, "
                "the REST provisioning before); what one more session costs:",
                "",
                "| sessions | collector RSS per added session | floor | ratio |",
                "|---|---|---|---|",
                *marginal,
                "",
                *goals,
                "",
                load.describe(),
            ]
        ),
    )


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def goal_lines(
    n: int, ours: dict[str, float], floor: dict[str, float], marginal: list[str]
) -> list[str]:
    cpu_ok = ours["idle_cpu"] <= floor["idle_cpu"]
    cpu_ratio = ours["idle_cpu"] / max(floor["idle_cpu"], 1e-9)
    rss_ratio = ours["rss"] / floor["rss"]
    total = ours["rss"] + ours["sim_rss"]
    added = f"; per added session {marginal[-1].split('|')[4].strip()}x" if marginal else ""
    return [
        f"- {n:,} sessions, idle CPU: collector {ours['idle_cpu'] * 100:.1f} % of a core, "
        f"floor {floor['idle_cpu'] * 100:.1f} % ({cpu_ratio:.2f}x): "
        f"goal <= 1x {verdict(cpu_ok)}.",
        f"- {n:,} sessions, RSS per session (whole process) {rss_ratio:.2f}x the floor's"
        f"{added}: goal <= 1.3x {verdict(rss_ratio <= 1.3)}.",
        f"- Memory: collector {ours['rss'] / MB:,.0f} MiB + simulator "
        f"{ours['sim_rss'] / MB:,.0f} MiB = {total / 1024**3:.2f} GiB of the machine's 24 GiB "
        f"({'fits' if total < MACHINE_BYTES else 'does NOT fit'}).",
    ]
