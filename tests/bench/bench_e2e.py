"""End-to-end throughput: simulator process -> client -> InfluxDB / VictoriaMetrics.

Side by side in one run, on the same burst of pre-encoded ``unified.asset_detail``
updates (3 currencies each) for 100 accounts:

* the floor: bare trio-websocket clients that only count frames;
* the collector (``gate-collector run``) writing v1 to InfluxDB 1.x and v2 to
  VictoriaMetrics;
* the baseline: websocket-client threads + json + influxdb_client's batching
  WriteApi (v2, to the same VictoriaMetrics).

Every written point is counted back. Nothing here asserts a time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from collector.keys import generate_master_key
from tests.bench.harness import (
    SimServer,
    collector,
    cpu_seconds,
    record,
    run_python,
    sim_server,
    wait_until,
)
from tests.servers import InfluxServer, VictoriaMetrics, influx_server, victoria_metrics

ACCOUNTS = 100
BURST = int(os.environ.get("BENCH_BURST", "1000"))
UPDATES = ACCOUNTS * BURST
POINTS = UPDATES * 3


def influx_count(server: InfluxServer, db: str) -> int:
    body = server.query('SELECT count("u") FROM "gate_unified_asset_detail"', db=db)
    series = body["results"][0].get("series")  # type: ignore[index]
    return int(series[0]["values"][0][1]) if series else 0


def vm_count(vm: VictoriaMetrics, metric: str) -> int:
    httpx.get(f"{vm.url}/internal/force_flush", timeout=30)  # make fresh samples searchable
    response = httpx.get(
        f"{vm.url}/api/v1/query",
        params={"query": f"sum(count_over_time({metric}[1d]))"},
        timeout=30,
    )
    result = response.json()["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def run_collector(tmp: Path, sim: SimServer, influx: str, count: Any) -> dict[str, float]:
    """Run ``gate-collector run`` until ``count()`` reaches every point; time and CPU."""
    with collector(tmp, sim, influx, generate_master_key()) as process:
        first = sim.burst_started()
        cpu_first = cpu_seconds(process.pid)
        end = wait_until(lambda: count() >= POINTS, timeout=1800, interval=0.05)
        cpu_end = cpu_seconds(process.pid)
    return {"seconds": end - first, "cpu_seconds": cpu_end - cpu_first, "points": float(count())}


def test_end_to_end_throughput(tmp_path: Path) -> None:
    rows: dict[str, dict[str, float]] = {}
    with influx_server(tmp_path / "influx") as influx, victoria_metrics(tmp_path / "vm") as vm:
        influx.create_database("bench")
        with sim_server(
            tmp_path / "sim-floor", "--accounts", str(ACCOUNTS), "--burst", str(BURST)
        ) as sim:
            floor = run_python(
                "tests.bench.floor_client",
                "--url",
                sim.ws_url,
                "--keys",
                str(sim.directory / "keys.json"),
                "--expect",
                str(UPDATES),
            )
            floor["seconds"] = floor["end"] - sim.burst_started()
            sim_stats = sim.stop()
        rows["floor (trio-websocket, count only)"] = {**floor, "points": 0.0}
        sim_rate = sim_stats["burst_sent"] / max(sim_stats["burst_seconds"], 1e-9)

        with sim_server(
            tmp_path / "sim-v1", "--accounts", str(ACCOUNTS), "--burst", str(BURST)
        ) as sim:
            rows["collector -> InfluxDB 1.x (v1)"] = run_collector(
                tmp_path / "c1",
                sim,
                f'[influx]\nurl = "{influx.url}"\ndatabase = "bench"\n',
                lambda: influx_count(influx, "bench"),
            )
        with sim_server(
            tmp_path / "sim-v2", "--accounts", str(ACCOUNTS), "--burst", str(BURST)
        ) as sim:
            rows["collector -> VictoriaMetrics (v2)"] = run_collector(
                tmp_path / "c2",
                sim,
                f'[influx]\nurl = "{vm.url}"\napi = "v2"\norg = "gate"\nbucket = "gate"\n',
                lambda: vm_count(vm, "gate_unified_asset_detail_u"),
            )
        with sim_server(
            tmp_path / "sim-base", "--accounts", str(ACCOUNTS), "--burst", str(BURST)
        ) as sim:
            baseline = run_python(
                "tests.bench.baseline_client",
                "--url",
                sim.ws_url,
                "--keys",
                str(sim.directory / "keys.json"),
                "--influx",
                vm.url,
                "--expect",
                str(UPDATES),
            )
            landed = wait_until(
                lambda: vm_count(vm, "baseline_asset_detail_u") >= POINTS,
                timeout=600,
                interval=0.05,
            )
            baseline["seconds"] = landed - sim.burst_started()
            baseline["points"] = vm_count(vm, "baseline_asset_detail_u")
        rows["baseline (websocket-client threads + WriteApi, v2)"] = baseline

    lines = [
        f"{UPDATES:,} `unified.asset_detail` updates ({POINTS:,} points) for {ACCOUNTS} "
        f"accounts, pre-encoded frames. Simulator send rate while feeding the floor: "
        f"{sim_rate:,.0f} frames/s.",
        "",
        "| client | updates/s | points/s | CPU µs/update | points arrived |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        rate = UPDATES / row["seconds"]
        arrived = "-" if not row["points"] else f"{int(row['points']):,} / {POINTS:,}"
        lines.append(
            f"| {name} | {rate:,.0f} | {rate * 3:,.0f} | "
            f"{row['cpu_seconds'] / UPDATES * 1e6:,.1f} | {arrived} |"
        )
    floor_rate = UPDATES / rows["floor (trio-websocket, count only)"]["seconds"]
    ours = rows["collector -> VictoriaMetrics (v2)"]
    v1 = rows["collector -> InfluxDB 1.x (v1)"]
    base = rows["baseline (websocket-client threads + WriteApi, v2)"]
    lines += [
        "",
        f"- collector (v1) / floor: {UPDATES / v1['seconds'] / floor_rate:.2f} (goal >= 0.5)",
        f"- collector / baseline, same VictoriaMetrics: {base['seconds'] / ours['seconds']:.2f}x "
        f"throughput (goal >= 3), {ours['cpu_seconds'] / base['cpu_seconds']:.2f}x the CPU "
        "per update (goal < 1)",
    ]
    record("End-to-end throughput", "\n".join(lines))
    assert rows["collector -> InfluxDB 1.x (v1)"]["points"] == POINTS
    assert rows["collector -> VictoriaMetrics (v2)"]["points"] == POINTS
