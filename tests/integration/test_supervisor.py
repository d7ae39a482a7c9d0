"""The supervisor in-process: shards, capacity, source addresses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from collector.config import Settings
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import WsFault
from collector.gate.broker import BrokerClient
from collector.keys import KeyStore, generate_master_key
from collector.points.lineproto import Bundle
from collector.session.session import AccountSession
from collector.supervisor.placement import owns
from collector.supervisor.supervisor import Supervisor
from tests.helpers import start_supervisor


@pytest.fixture
def sim(real_clock_sim: Simulator) -> Simulator:
    """conftest's real-clock simulator: the supervisor's sessions sign with time.time()."""
    return real_clock_sim


async def test_accounts_beyond_capacity_are_counted_and_logged_once(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    with capture_logs() as logs:
        supervisor = await start_supervisor(sim, tmp_path, nursery, http, max_connections_per_ip=4)
        await supervisor.refresh()  # a second refresh
    fields = supervisor.stats_fields()
    assert {"frames_rejected", "fields_invalid", "gate_errors", "frames_invalid"} <= set(fields)
    assert fields["sessions_total"] == 4
    assert fields["sessions_over_capacity"] == 5  # 9 enabled accounts
    assert len([e for e in logs if e["event"] == "over_capacity"]) == 5
    assert sim.state.calls["keys_created"] == 4  # no key for an account without a session
    assert "5 over capacity" in supervisor.status_line()


async def test_a_stopped_session_gives_its_address_room_back(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    supervisor = await start_supervisor(sim, tmp_path, nursery, http, max_connections_per_ip=4)
    first = min(supervisor.session_stats())
    supervisor.stop_session(first, "stopped by the test")
    assert len(supervisor.session_stats()) == 3
    await supervisor.refresh()  # the room is taken again
    assert len(supervisor.session_stats()) == 4
    assert supervisor.stats_fields()["sessions_over_capacity"] == 5


async def test_sessions_are_spread_over_source_addresses(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    supervisor = await start_supervisor(
        sim,
        tmp_path,
        nursery,
        http,
        max_connections_per_ip=5,
        source_addresses=["127.0.0.1", "127.0.0.2"],
    )
    addresses = list(supervisor.source_addresses().values())
    assert sorted(addresses) == ["127.0.0.1"] * 5 + ["127.0.0.2"] * 4
    with trio.fail_after(10):
        while sum(sim.state.active.values()) < 18:
            await trio.sleep(0.05)
    assert supervisor.stats_fields()["sessions_over_capacity"] == 0


@pytest.mark.parametrize("shard", ["0/2", "1/2"])
async def test_only_this_shards_accounts_get_sessions(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient, shard: str
) -> None:
    index, count = (int(x) for x in shard.split("/"))
    supervisor = await start_supervisor(sim, tmp_path, nursery, http, shard=shard)
    enabled = {a.gate_id for a in sim.state.accounts.values() if a.status == "enabled"}
    mine = {a for a in enabled if owns(a, index, count)}
    assert 0 < len(mine) < len(enabled)
    assert set(supervisor.session_stats()) == mine
    assert sim.state.calls["keys_created"] == len(mine)


async def test_sessions_sign_with_the_clock_skew_measured_over_rest(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    sim.state.skew = 120.0  # Gate two minutes ahead: uncorrected signatures would expire
    await start_supervisor(sim, tmp_path, nursery, http)
    with trio.fail_after(10):
        while sum(sim.state.active.values()) < 18:
            await trio.sleep(0.05)
    assert sim.state.ws_events["auth_refused"] == 0


async def test_an_expired_signature_is_cured_by_the_clock_not_a_new_key(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    supervisor = await start_supervisor(sim, tmp_path, nursery, http)
    with trio.fail_after(10):
        while sim.state.active[100001] < 2:
            await trio.sleep(0.05)
    keys_before = sim.state.calls["keys_created"]
    sim.state.skew = 120.0  # Gate's clock jumps: the next subscribe expires
    sim.state.accounts[100001].ws_faults.append(WsFault("drop"))
    with trio.fail_after(20):
        while sim.state.ws_events["auth_refused"] == 0:
            await trio.sleep(0.05)
        while sim.state.active[100001] < 2:
            await trio.sleep(0.05)
    assert sim.state.calls["keys_created"] == keys_before
    assert supervisor.stats.key_replacements == 0


async def test_sessions_ping_at_the_configured_interval_from_one_shared_timer_task(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    made: list[dict[str, Any]] = []

    def factory(*args: Any, **kwargs: Any) -> AccountSession:
        made.append(kwargs)
        return AccountSession(*args, **kwargs)

    settings = Settings.model_validate(
        {
            "gate": {"rest_url": sim.rest_url, "ws_url": sim.ws_url, "ping_interval": 7},
            "state": {"dir": str(tmp_path)},
        }
    )
    broker = BrokerClient(http, sim.state.broker, base_url=sim.rest_url)
    store = KeyStore.open(tmp_path, generate_master_key())
    send, _receive = trio.open_memory_channel[Bundle](10_000)
    supervisor = Supervisor(settings, broker, store, send, session_factory=factory)
    nursery.start_soon(supervisor.run)
    with trio.fail_after(30):
        await supervisor.ready.wait()
        while len(made) < 9:  # 9 enabled accounts
            await trio.sleep(0.05)
    assert {kwargs["timing"].ping_interval for kwargs in made} == {7}
    timers = {id(kwargs["timers"]) for kwargs in made}
    assert len(timers) == 1 and made[0]["timers"] is not None
