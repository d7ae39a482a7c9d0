"""Per-account state from the supervisor: active, refused, forbidden, not unified, keyless.

The supervisor runs in-process against the simulator on the real clock (its
REST client and sessions sign with wall time); short session timings keep the
retries quick, and every wait has a deadline.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import trio

from collector.config import Settings
from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient
from collector.gate.protocol import ASSET_DETAIL, ASSETS
from collector.gate.snapshot import SnapshotClient
from collector.keys import KeyStore, generate_master_key
from collector.points import schema
from collector.points.lineproto import Point
from collector.session.session import SessionTiming
from collector.supervisor import account_state as status
from collector.supervisor.supervisor import Supervisor
from tests.helpers import wait_until

TIMING = SessionTiming(ack_timeout=2.0, resubscribe_base=0.2, resubscribe_max=0.5)
REFUSED_ASSETS, REFUSED_DETAIL, FORBIDDEN, NOT_UNIFIED, KEYLESS = (
    100001,
    100002,
    100003,
    100005,
    100006,
)


@pytest.fixture
async def sim(nursery: trio.Nursery) -> Simulator:
    simulator = Simulator.create(accounts=12, disabled_every=4)  # 9 enabled
    simulator.state.push_interval = 0.1
    simulator.state.rate_limit = 100_000
    await simulator.start(nursery)
    return simulator


@pytest.fixture
async def supervisor(
    sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> Supervisor:
    accounts = sim.state.accounts
    accounts[REFUSED_ASSETS].refuse[ASSETS] = 2
    accounts[REFUSED_DETAIL].refuse[ASSET_DETAIL] = 3
    accounts[FORBIDDEN].refuse[ASSET_DETAIL] = 4
    accounts[NOT_UNIFIED].unified = False
    # Gate refuses to create a key for one account: it stays keyless (retried with backoff).
    accounts[KEYLESS].refuse_keys = True
    settings = Settings.model_validate(
        {
            "gate": {"rest_url": sim.rest_url, "ws_url": sim.ws_url},
            "accounts": {"snapshot_interval": 2.0, "snapshot_rate": 50.0},
            "state": {"dir": str(tmp_path)},
        }
    )
    broker = BrokerClient(http, sim.state.broker, base_url=sim.rest_url)
    store = KeyStore.open(tmp_path, generate_master_key())
    send, receive = trio.open_memory_channel[list[Point]](10_000)

    async def drain() -> None:
        async for _ in receive:
            pass

    snapshots = SnapshotClient(http, sim.rest_url, time.time)
    sup = Supervisor(settings, broker, store, send, timing=TIMING, snapshot_client=snapshots)
    nursery.start_soon(drain)
    nursery.start_soon(sup.run)
    with trio.fail_after(30):
        await sup.ready.wait()
    return sup


def states(supervisor: Supervisor) -> dict[int, status.AccountState]:
    return {s.account: s for s in supervisor.account_states()}


async def test_every_account_says_what_it_is_and_refusals_recover(
    sim: Simulator, supervisor: Supervisor
) -> None:
    expected = {
        REFUSED_ASSETS: status.REFUSED,
        REFUSED_DETAIL: status.REFUSED,
        FORBIDDEN: status.FORBIDDEN,
        NOT_UNIFIED: status.NOT_UNIFIED,
        KEYLESS: status.KEYLESS,
    }
    enabled = [a.gate_id for a in sim.state.accounts.values() if a.status == "enabled"]
    healthy = set(enabled) - set(expected)

    def settled() -> bool:
        now = states(supervisor)
        return all(now.get(a) and now[a].state == s for a, s in expected.items()) and all(
            now[a].state == status.ACTIVE and now[a].snapshots >= 1 for a in healthy
        )

    await wait_until(settled)
    now = states(supervisor)
    assert set(now) == set(enabled)
    assert "code 2" in now[REFUSED_ASSETS].reason and "code 3" in now[REFUSED_DETAIL].reason
    assert "FORBIDDEN" in now[FORBIDDEN].reason
    assert "unified" in now[NOT_UNIFIED].reason
    assert not any(now[a].connected for a in (REFUSED_ASSETS, REFUSED_DETAIL, FORBIDDEN))
    fields = supervisor.stats_fields()
    # not_unified is subscribed (the WebSocket does not know); it is connected but not true
    assert fields["sessions_connected"] == len(healthy) + 1
    assert fields[schema.STAT_ACCOUNTS_ACTIVE] == len(healthy)
    assert fields[schema.STAT_ACCOUNTS_REFUSED] == 2
    assert fields[schema.STAT_ACCOUNTS_FORBIDDEN] == 1
    assert fields[schema.STAT_ACCOUNTS_NOT_UNIFIED] == 1
    assert fields[schema.STAT_ACCOUNTS_KEYLESS] == 1
    assert fields[schema.STAT_SNAPSHOTS] >= len(healthy)  # one on subscribe, at least
    assert all(now[a].last_snapshot_age is not None for a in healthy)
    assert fields[schema.STAT_SNAPSHOT_FAILURES] >= 1  # the account not in unified mode
    assert supervisor.stats.key_replacements == 0  # refusals are never key churn
    # the keyless account has a slot (it retries its key) but no session
    assert f"{len(healthy) + 1}/8 sessions connected" in supervisor.status_line()

    for account in (REFUSED_ASSETS, REFUSED_DETAIL):
        sim.state.accounts[account].refuse.clear()
    await wait_until(
        lambda: all(states(supervisor)[a].state == status.ACTIVE for a in (100001, 100002))
    )
    for account in (REFUSED_ASSETS, REFUSED_DETAIL):
        sim.state.accounts[account].change_interval = 0.1
    await wait_until(
        lambda: all(
            sim.state.pushed[(a, c)] >= 3
            for a in (REFUSED_ASSETS, REFUSED_DETAIL)
            for c in (ASSETS, ASSET_DETAIL)
        )
    )
    now = states(supervisor)
    assert now[REFUSED_ASSETS].connected and now[REFUSED_ASSETS].last_data_age is not None
    assert supervisor.stats_fields()[schema.STAT_ACCOUNTS_REFUSED] == 0
