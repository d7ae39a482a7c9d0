"""The collector's HTTP endpoint: bounds, health, readiness, and /metrics == collector_stats."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from collector.app.daemon import run_daemon
from collector.config import ConfigError, Settings, load_settings, shard_from_hostname
from collector.config.settings import parse_listen
from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient
from collector.keys import KeyStore, generate_master_key
from collector.points.lineproto import Point
from collector.supervisor.supervisor import Supervisor
from collector.telemetry.http import Observed, bound_port, open_listeners, serve_endpoint
from collector.telemetry.http.endpoints import Progress
from collector.telemetry.http.metrics import FIELDS, PREFIX
from collector.telemetry.http.server import MAX_REQUEST
from tests.helpers import start_collector, wait_ready
from tests.servers import InfluxServer

# -- pure parts --------------------------------------------------------------------------


def test_progress_is_healthy_while_counters_move_or_nothing_is_waiting() -> None:
    progress = Progress(stall_seconds=60)
    progress.observe(0, (1, 0), backlog=10)
    progress.observe(50, (2, 0), backlog=10)  # wrote something
    progress.observe(100, (2, 0), backlog=0)  # nothing to do
    progress.observe(200, (2, 0), backlog=0)
    assert progress.healthy(200)


def test_progress_is_wedged_after_stall_seconds_with_a_backlog() -> None:
    progress = Progress(stall_seconds=60)
    progress.observe(0, (5, 0), backlog=10)
    progress.observe(30, (5, 0), backlog=10)
    assert progress.healthy(30)
    progress.observe(61, (5, 0), backlog=10)
    assert not progress.healthy(61)
    assert progress.stalled_for(61) == 61


def test_listen_must_be_host_and_port() -> None:
    assert parse_listen("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_listen("[::1]:9108") == ("::1", 9108)
    with pytest.raises(ValueError, match="got '9108'"):
        parse_listen("9108")


def test_a_bad_listen_setting_names_the_value() -> None:
    with pytest.raises(ConfigError, match=r"http\.listen.*host:port.*'localhost'"):
        load_settings(None, {"GATE_COLLECTOR__HTTP__LISTEN": '"localhost"'})


def test_auto_shard_takes_the_statefulset_ordinal_from_the_hostname() -> None:
    env = {
        "HOSTNAME": "gate-collector-3",
        "GATE_COLLECTOR__ACCOUNTS__SHARD": '"auto"',
        "GATE_COLLECTOR__ACCOUNTS__SHARDS": "5",
    }
    settings = load_settings(None, env)
    assert (settings.accounts.shard_index, settings.accounts.shard_count) == (3, 5)
    with pytest.raises(ConfigError, match="'gate-collector-5'"):
        shard_from_hostname("gate-collector-5", 5)
    with pytest.raises(ConfigError, match=r"needs accounts\.shards"):
        load_settings(None, {"GATE_COLLECTOR__ACCOUNTS__SHARD": '"auto"'})


# -- the server in-process ------------------------------------------------------------


async def unstarted_endpoint(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> str:
    settings = Settings.model_validate(
        {"gate": {"rest_url": sim.rest_url, "ws_url": sim.ws_url}, "state": {"dir": str(tmp_path)}}
    )
    broker = BrokerClient(http, sim.state.broker, base_url=sim.rest_url)
    store = KeyStore.open(tmp_path, generate_master_key())
    send, _ = trio.open_memory_channel[list[Point]](1)
    supervisor = Supervisor(settings, broker, store, send)  # never run: no discovery yet
    observed = Observed(supervisor, lambda: {"points_written": 0}, dict, "0/1", "test")
    listeners = await open_listeners("127.0.0.1:0")
    nursery.start_soon(serve_endpoint, observed, listeners)
    return f"http://127.0.0.1:{bound_port(listeners)}"


async def test_not_ready_before_the_first_discovery(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    url = await unstarted_endpoint(sim, tmp_path, nursery, http)
    ready = await http.get(f"{url}/readyz")
    assert (ready.status_code, ready.text) == (
        503,
        "first discovery of sub-accounts not done yet\n",
    )
    assert (await http.get(f"{url}/healthz")).status_code == 200
    assert (await http.get(f"{url}/nothing")).status_code == 404
    assert (await http.post(f"{url}/metrics")).status_code == 405


async def test_an_oversized_request_is_refused(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    url = await unstarted_endpoint(sim, tmp_path, nursery, http)
    answer = await http.get(f"{url}/status", headers={"X-Big": "x" * (2 * MAX_REQUEST)})
    assert answer.status_code == 431
    assert (await http.get(f"{url}/healthz")).status_code == 200  # still serving


# -- against a running daemon ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric_values(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def consistent_read(http: httpx.AsyncClient, url: str) -> tuple[dict[str, Any], str]:
    """/status, /metrics, /status until both /status agree: /metrics was read in between."""
    with trio.fail_after(30):
        while True:
            before = (await http.get(f"{url}/status")).json()
            metrics = (await http.get(f"{url}/metrics")).text
            after = (await http.get(f"{url}/status")).json()
            if before["stats"] == after["stats"]:
                return after, metrics
            await trio.sleep(0.05)


async def test_metrics_equal_collector_stats_and_ready_after_discovery(
    small_gate: Simulator, influxdb: InfluxServer, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    collector, url = await start_collector(small_gate, influxdb, tmp_path, "http_ok")
    try:
        ready = await wait_ready(http, url, 200, "sessions connected")
        assert ready.status_code == 200
        with trio.fail_after(30):
            while (await http.get(f"{url}/status")).json()["sessions"].get("active") != 18:
                await trio.sleep(0.1)
        status, metrics = await consistent_read(http, url)
        values = metric_values(metrics)
        for name, value in status["stats"].items():
            family = FIELDS[name]
            if family is not None:
                suffix = "_total" if family.kind == "counter" else ""
                assert values[PREFIX + family.name + suffix] == value, name
        assert status["stats"]["sessions_connected"] == 18
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        by_state = {s.labels["state"]: s.value for s in families[PREFIX + "accounts"].samples}
        assert {state: n for state, n in by_state.items() if n} == {"active": 18}
        assert families[PREFIX + "build_info"].samples[0].labels["shard"] == "0/1"
        assert (await http.get(f"{url}/healthz")).status_code == 200
        assert len(status["accounts"]) == 18
    finally:
        assert await collector.stop() == 0


async def test_ready_while_over_capacity_which_metrics_show(
    small_gate: Simulator, influxdb: InfluxServer, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    collector, url = await start_collector(small_gate, influxdb, tmp_path, "http_over", per_ip=10)
    try:
        answer = await wait_ready(http, url, 200, "over capacity")
        assert answer.text == "10/10 sessions connected, 8 over capacity\n"
        status = (await http.get(f"{url}/status")).json()
        assert status["sessions"]["over_capacity"] == 8
        assert status["ready"] is True
        values = metric_values((await http.get(f"{url}/metrics")).text)
        assert values[PREFIX + "accounts_over_capacity"] == 8
    finally:
        assert await collector.stop() == 0


async def test_a_taken_port_is_a_plain_start_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings.model_validate(
            {
                "gate": {"api_key": "k", "api_secret": "s"},
                "state": {"dir": str(tmp_path), "master_key": generate_master_key()},
                "http": {"listen": f"127.0.0.1:{port}"},
            }
        )
        with pytest.raises(  # a local problem: exit 2, as a ConfigError
            ConfigError, match=rf"cannot listen on http.listen = '127.0.0.1:{port}'"
        ):
            await run_daemon(settings)
