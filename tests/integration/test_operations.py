"""What an operator sees: outage and recovery lines, the summary line, systemd start time."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import httpx
import trio
from structlog.testing import capture_logs

from collector.app.summary import Summary, Totals, summary_fields
from collector.base.systemd import Notifier
from collector.config import InfluxSettings, Settings
from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient
from collector.keys import KeyStore, generate_master_key
from collector.points.lineproto import Point
from collector.sink.writer import Sink
from collector.supervisor.supervisor import Supervisor
from tests.servers import InfluxServer, free_port


def bundles(count: int) -> list[list[Point]]:
    return [
        [Point("gate_unified_assets", (("account", str(n)),), {"u": n}, 1_700_000_000_000 + n)]
        for n in range(count)
    ]


async def test_an_outage_logs_its_backlog_and_the_recovery_is_one_line(
    influxdb: InfluxServer, http: httpx.AsyncClient
) -> None:
    """InfluxDB "moves" (SIGHUP with a new influx.url): the old one is down."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    influxdb.create_database(database)
    common: dict[str, Any] = {"database": database, "batch_size": 10, "flush_interval": 0.05}
    down = InfluxSettings(url=f"http://127.0.0.1:{free_port()}", **common)
    sink = Sink(http, down, None, backoff=(0.05, 0.2), shutdown_timeout=0.5)
    send, receive = trio.open_memory_channel[list[Point]](100)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, receive)
            for bundle in bundles(60):
                send.send_nowait(bundle)  # all in before the first write: 6 batches of 10
            with trio.fail_after(10):
                while not any(e["event"] == "influx_unreachable" for e in logs):
                    await trio.sleep(0.02)
                await sink.retarget(InfluxSettings(url=influxdb.url, **common))
                while sink.stats.points_written < 60:
                    await trio.sleep(0.02)
            await send.aclose()
    unreachable = [e for e in logs if e["event"] == "influx_unreachable"]
    assert unreachable[0]["backlog_points"] == 60  # the backlog, not the batch size
    assert unreachable[0]["points"] == 10
    (recovered,) = [e for e in logs if e["event"] == "influx_recovered"]
    assert recovered["backlog_points"] == 50 and recovered["failed_attempts"] == len(unreachable)
    assert [e["url"] for e in logs if e["event"] == "influx_target"] == [f"{influxdb.url}/write"]
    result = influxdb.query("SELECT count(u) FROM gate_unified_assets", db=database)
    assert result["results"][0]["series"][0]["values"][0][1] == 60  # type: ignore[index]


def test_summary_fields_are_sessions_by_state_rates_and_backlog() -> None:
    fields = summary_fields(
        Totals(at=100.0, updates=1_000, points=3_000),
        Totals(at=160.0, updates=7_000, points=21_000),
        {"sessions_total": 10, "sessions_connected": 8, "sessions_over_capacity": 2},
        backlog=1234,
    )
    assert fields == {
        "sessions_connected": 8,
        "sessions_connecting": 2,
        "sessions_over_capacity": 2,
        "updates_per_s": 100.0,
        "points_per_s": 300.0,
        "backlog_points": 1234,
    }


class _Counters:
    def __init__(self) -> None:
        self.frames = 0
        self.points_written = 0

    def stats_fields(self) -> dict[str, float | int]:
        return {"sessions_total": 3, "sessions_connected": 3, "updates_received": self.frames}

    @property
    def stats(self) -> _Counters:
        return self

    @property
    def buffered_points(self) -> int:
        return 7


async def test_a_summary_line_every_interval(autojump_clock: Any) -> None:
    counters = _Counters()
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Summary(counters, counters, None, 60.0).run)
            await trio.sleep(1)
            counters.frames, counters.points_written = 600, 1800
            await trio.sleep(60)
            nursery.cancel_scope.cancel()
    (line,) = [e for e in logs if e["event"] == "summary"]
    assert (line["updates_per_s"], line["points_per_s"], line["backlog_points"]) == (10.0, 30.0, 7)


async def test_systemd_gives_more_start_time_while_keys_are_provisioned(
    nursery: trio.Nursery, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    sim = Simulator.create(accounts=6, disabled_every=0)
    await sim.start(nursery)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.setblocking(False)
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    settings = Settings.model_validate(
        {"gate": {"rest_url": sim.rest_url, "ws_url": sim.ws_url}, "state": {"dir": str(tmp_path)}}
    )
    send, _receive = trio.open_memory_channel[list[Point]](10_000)
    supervisor = Supervisor(
        settings,
        BrokerClient(http, sim.state.broker, base_url=sim.rest_url),
        KeyStore.open(tmp_path, generate_master_key()),
        send,
        notifier=notifier,
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as inner:
            inner.start_soon(supervisor.run)
            await supervisor.ready.wait()
            inner.cancel_scope.cancel()
    heard = []
    while True:
        try:
            heard.append(listener.recv(4096).decode())
        except BlockingIOError:
            break
    assert heard[0].startswith("EXTEND_TIMEOUT_USEC=90000000\nSTATUS=starting:")
    ready = next(i for i, m in enumerate(heard) if m.startswith("READY=1"))
    assert ready > 0
    assert sim.state.calls["keys_created"] == 6  # provisioned while the start was extended
