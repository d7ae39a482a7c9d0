"""``/metrics`` of a running ``gate-collector run`` (real simulator, real InfluxDB)
through ``promtool check metrics``, and an InfluxDB outage seen by the shipped
alert's own expression, evaluated by a real TSDB (VictoriaMetrics) scraping it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import trio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import Fault
from collector.points import schema
from collector.telemetry.http.metrics import FIELDS, PREFIX
from tests.helpers import (
    collector_config,
    get_when_up,
    query,
    running_collector,
    wait_until_ready,
)
from tests.servers import InfluxServer, influx_server, victoria_metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "gate-collector-rules.yaml"
STATS_WRITTEN = 'SELECT count("points_written") FROM "collector_stats"'


@pytest.fixture
async def busy_gate(nursery: trio.Nursery) -> Simulator:
    sim = Simulator.create(accounts=12, disabled_every=6)  # 10 enabled
    sim.state.push_interval = sim.state.change_interval = 0.2  # a steady flow of points
    sim.state.rate_limit = 100_000
    await sim.start(nursery)
    return sim


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool comes with Debian's prometheus (deploy/install-test-servers.sh)"
    return subprocess.run(
        [binary, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def test_every_collector_stats_field_has_a_place_on_metrics() -> None:
    fields = {v for k, v in vars(schema).items() if k.startswith("STAT_")}
    assert set(FIELDS) == fields


def test_promtool_would_catch_a_counter_that_breaks_the_rules() -> None:
    bad = "# HELP x_seconds_total t\n# TYPE x_seconds_total gauge\nx_seconds_total 1\n"
    assert promtool_check(bad).returncode != 0


async def test_live_metrics_pass_promtool_with_the_right_types(
    busy_gate: Simulator, influxdb: InfluxServer, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    config = collector_config(tmp_path, busy_gate, influxdb.url, "metrics_live")
    async with running_collector(tmp_path, config) as collector:
        assert "10/10 sessions connected" in await wait_until_ready(http, collector.url)
        with trio.fail_after(30):  # a few writes, so the histogram has observations
            while "influx_up 1.0" not in (
                text := (await http.get(f"{collector.url}/metrics")).text
            ):
                await trio.sleep(0.2)
    result = promtool_check(text)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    kinds = {name: family.type for name, family in families.items()}
    assert kinds[PREFIX + "points_written"] == "counter"
    assert kinds[PREFIX + "updates_received"] == "counter"
    for gauge in ("sessions", "sessions_connected", "accounts", "spool_bytes", "buffer_points"):
        assert kinds[PREFIX + gauge] == "gauge", gauge
    assert kinds[PREFIX + "influx_write_duration_seconds"] == "histogram"
    assert kinds["process_resident_memory_bytes"] == "gauge"
    assert kinds["process_cpu_seconds"] == "counter"
    values = {s.name: s.value for f in families.values() for s in f.samples if not s.labels}
    assert values[PREFIX + "sessions"] == values[PREFIX + "sessions_connected"] == 10
    assert values[PREFIX + "influx_write_duration_seconds_count"] >= 1
    assert values[PREFIX + "influx_last_success_timestamp_seconds"] > 1.7e9
    assert values[PREFIX + "ready"] == 1
    build = families[PREFIX + "build_info"].samples[0]
    assert (build.value, build.labels["shard"]) == (1, "0/1")
    by_state = {s.labels["state"]: s.value for s in families[PREFIX + "accounts"].samples}
    assert (by_state["active"], by_state["over_capacity"]) == (10, 0)
    assert all(
        f.documentation and "collector_stats field" not in f.documentation
        for f in families.values()
    )


def alert_expr(name: str) -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    [expr] = [r["expr"] for g in groups for r in g["rules"] if r.get("alert") == name]
    return str(expr)


async def firing(http: httpx.AsyncClient, tsdb: str, expr: str) -> bool:
    """Whether ``expr`` selects anything now (the alert's condition holds). Scraped
    samples are made searchable first: a query that finds no series yet would otherwise
    keep missing them for ~10 s, until the TSDB flushes on its own."""
    (await http.get(f"{tsdb}/internal/force_flush")).raise_for_status()
    answer = await http.get(f"{tsdb}/api/v1/query", params={"query": expr})
    answer.raise_for_status()
    return bool(answer.json()["data"]["result"])


async def wait_until(
    http: httpx.AsyncClient, tsdb: str, expr: str, want: bool, seconds: float
) -> None:
    with trio.fail_after(seconds):
        while await firing(http, tsdb, expr) != want:
            await trio.sleep(0.2)


async def test_an_influxdb_outage_makes_the_delivery_alert_true_then_false(
    busy_gate: Simulator, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    expr = alert_expr("GateCollectorInfluxNotTakingWrites")
    with influx_server(tmp_path / "influx") as influx:
        config = collector_config(tmp_path, busy_gate, influx.url, "outage")
        async with running_collector(tmp_path, config) as collector:
            await wait_until_ready(http, collector.url)
            scrape = tmp_path / "scrape.yml"
            target = collector.url.removeprefix("http://")
            scrape.write_text(
                "scrape_configs:\n  - job_name: gate-collector\n    scrape_interval: 1s\n"
                f"    static_configs:\n      - targets: ['{target}']\n"
            )
            with victoria_metrics(tmp_path / "vm", f"-promscrape.config={scrape}") as vm:
                await wait_until(http, vm.url, "gate_collector_influx_up == 1", True, 60)
                assert not await firing(http, vm.url, expr)
                influx.stop()
                await wait_until(http, vm.url, expr, True, 60)  # during the outage
                metrics = (await get_when_up(http, f"{collector.url}/metrics")).text
                assert "gate_collector_influx_write_errors_total" in metrics
                influx.start()
                await wait_until(http, vm.url, expr, False, 120)  # after the recovery
            with trio.fail_after(30):  # collector_stats goes out every 10 s
                while not (written := query(influx, "outage", STATS_WRITTEN)):
                    await trio.sleep(0.2)
    assert written[0]["values"][0][1] >= 1


async def test_updates_count_pushes_only_not_acks_or_pongs(
    nursery: trio.Nursery, influxdb: InfluxServer, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    idle = Simulator.create(accounts=5, disabled_every=0)  # nothing changes: Gate pushes nothing
    await idle.start(nursery)
    config = collector_config(tmp_path, idle, influxdb.url, "updates_only")
    async with running_collector(tmp_path, config) as collector:
        await wait_until_ready(http, collector.url)
        text = (await http.get(f"{collector.url}/metrics")).text
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values[PREFIX + "frames_received_total"] >= 10  # two subscribe acks per session
    assert values[PREFIX + "updates_received_total"] == sum(idle.state.pushed.values())


async def test_gate_up_follows_the_broker_apis_answers_to_discovery(
    nursery: trio.Nursery, influxdb: InfluxServer, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    gate = Simulator.create(accounts=2, disabled_every=0)
    gate.state.rate_limit = 100_000
    await gate.start(nursery)
    config = collector_config(tmp_path, gate, influxdb.url, "gate_up")
    config.write_text(config.read_text() + "[accounts]\nrefresh_interval = 0.5\n")

    async def gate_up() -> float:
        text = (await http.get(f"{collector.url}/metrics")).text
        [value] = [s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == PREFIX + "gate_up"]  # fmt: skip
        return value

    async with running_collector(tmp_path, config) as collector:
        await wait_until_ready(http, collector.url)
        assert await gate_up() == 1
        gate.state.faults.append(Fault("/broker/sub_accounts", count=10_000, method="GET"))
        with trio.fail_after(90):  # a discovery gives up after its retries
            while await gate_up() != 0:
                await trio.sleep(0.2)
        gate.state.faults.clear()
        with trio.fail_after(30):
            while await gate_up() != 1:
                await trio.sleep(0.2)
