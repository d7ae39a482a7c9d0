"""The truth for every account, against the real InfluxDB and the Gate simulator.

Gate pushes only on change, so these tests start from accounts that never change
and show that snapshots alone put every account's state into InfluxDB, that a
push moves only its own account, and that gaps and reconnects resync exactly
once. The collector runs in-process on real time (InfluxDB is another process:
trio's autojump clock would time its answers out); every wait has a deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from collector.app.daemon import Daemon, run_daemon
from collector.config import Settings
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import SimSubAccount, WsFault
from collector.devtools.simulator.ws_values import truncate2
from collector.gate.protocol import ASSET_DETAIL, ASSETS
from collector.keys import generate_master_key
from collector.points import schema
from tests.helpers import wait_until
from tests.servers import InfluxServer

CURRENCIES = ("BTC", "ETH", "USDT")


@dataclass
class Running:
    sim: Simulator
    daemon: Daemon
    influx: InfluxServer
    db: str

    async def rows(self, q: str) -> list[dict[str, Any]]:
        answer = await trio.to_thread.run_sync(self.influx.query, q, self.db)
        result = answer["results"][0]  # type: ignore[index]
        assert "error" not in result, result
        return list(result.get("series", []))

    async def last_assets(self) -> dict[str, dict[str, float]]:
        """The newest value of every field of every account (what last() shows)."""
        names = ", ".join(f'last("{n}") AS "{n}"' for n in schema.ASSETS_FIELDS.values())
        series = await self.rows(f"SELECT {names} FROM {schema.ASSETS} GROUP BY account")
        return {
            s["tags"]["account"]: dict(zip(s["columns"][1:], s["values"][0][1:], strict=True))
            for s in series
        }

    async def last_detail(self) -> dict[tuple[str, str], dict[str, float]]:
        fields = ("available", "freeze", "equity", "total_liab")
        names = ", ".join(f'last("{n}") AS "{n}"' for n in fields)
        series = await self.rows(
            f"SELECT {names} FROM {schema.ASSET_DETAIL} GROUP BY account, currency"
        )
        return {
            (s["tags"]["account"], s["tags"]["currency"]): dict(
                zip(s["columns"][1:], s["values"][0][1:], strict=True)
            )
            for s in series
        }


def enabled(sim: Simulator) -> list[SimSubAccount]:
    return [a for a in sim.state.accounts.values() if a.status == "enabled"]


def state_assets(account: SimSubAccount) -> dict[str, float]:
    return {k: float(v) for k, v in account.assets().items()}


def state_detail(account: SimSubAccount, index: int) -> dict[str, float]:
    return {k: float(v) for k, v in account.balance(index).items()}


@pytest.fixture
async def running(
    request: pytest.FixtureRequest,
    nursery: trio.Nursery,
    influxdb: InfluxServer,
    tmp_path: Path,
) -> AsyncIterator[Running]:
    """Quiet accounts (no change, no push) and the collector, with the test's
    ``accounts`` settings (``@pytest.mark.parametrize("running", [{...}], indirect=True)``)."""
    accounts_settings: dict[str, Any] = getattr(request, "param", {})
    sim = Simulator.create(accounts=12, disabled_every=4)
    sim.state.push_interval = 0.1
    sim.state.rate_limit = 100_000
    await sim.start(nursery)
    db = f"truth_{request.node.name.split('[')[0][-40:]}"
    settings = Settings.model_validate(
        {
            "gate": {
                "rest_url": sim.rest_url,
                "ws_url": sim.ws_url,
                "api_key": sim.state.broker.key,
                "api_secret": sim.state.broker.secret,
            },
            "accounts": accounts_settings,
            "state": {"dir": str(tmp_path / "state"), "master_key": generate_master_key()},
            "influx": {"url": influxdb.url, "database": db, "flush_interval": 0.1},
        }
    )
    stop = trio.Event()
    started: list[Daemon] = []
    done = trio.Event()

    async def collector() -> None:
        try:
            await run_daemon(settings, stop=stop, on_start=started.append, stats_interval=0.5)
        finally:
            done.set()

    nursery.start_soon(collector)
    with trio.fail_after(30):
        while not started or not started[0].supervisor.ready.is_set():
            await trio.sleep(0.05)
    yield Running(sim, started[0], influxdb, db)
    stop.set()
    with trio.fail_after(30):
        await done.wait()


@pytest.mark.parametrize("running", [{"snapshot_interval": 3.0}], indirect=True)
async def test_quiet_accounts_all_get_their_true_state_then_a_push_moves_only_its_own(
    running: Running,
) -> None:
    sim = running.sim
    live = enabled(sim)
    assert len(live) == 9

    async def all_there() -> bool:
        details = await running.last_detail()
        return len(await running.last_assets()) == 9 and len(details) == 9 * 3

    await wait_until(all_there, seconds=3.0 + 10.0)  # one snapshot round, and some slack
    assert sum(sim.state.pushed.values()) == 0  # nothing was ever pushed: all snapshots
    assets, details = await running.last_assets(), await running.last_detail()
    for account in live:
        assert assets[str(account.gate_id)] == state_assets(account)
        for i, currency in enumerate(CURRENCIES):
            assert details[(str(account.gate_id), currency)] == state_detail(account, i)

    moved = live[4]
    moved.change(trio.current_time())

    async def pushed_and_written() -> bool:
        now = await running.last_assets()
        want = float(truncate2(moved.assets()[schema.EQUITY]))
        return now[str(moved.gate_id)][schema.EQUITY] in (want, state_assets(moved)[schema.EQUITY])

    await wait_until(pushed_and_written)
    assert {key[0] for key, n in sim.state.pushed.items() if n} == {moved.gate_id}
    after = await running.last_assets()
    for account in live:
        if account is not moved:
            assert after[str(account.gate_id)] == assets[str(account.gate_id)]
    assert after[str(moved.gate_id)] != assets[str(moved.gate_id)]


def close_to_state(stored: dict[str, float], state: dict[str, float]) -> bool:
    """Equal to the state at the precision it arrived with: a push carries Gate's
    2-decimal truncation, a snapshot the full value."""
    return all(
        name in stored
        and (stored[name] == value or float(truncate2(f"{value:.8f}")) == stored[name])
        for name, value in state.items()
    )


@pytest.mark.parametrize("running", [{"snapshot_interval": 0}], indirect=True)
async def test_a_gap_and_a_reconnect_each_take_exactly_one_snapshot(running: Running) -> None:
    sim = running.sim
    account = enabled(sim)[0]
    account.u_mode = "counter"
    key = account.gate_id

    async def first_snapshots_taken() -> bool:
        return all(sim.state.snapshots[a.gate_id] == 1 for a in enabled(sim))

    await wait_until(first_snapshots_taken)  # one each, when the subscriptions became active
    account.change_interval = 0.2
    with trio.fail_after(10):
        while sim.state.pushed[(key, ASSET_DETAIL)] < 3:
            await trio.sleep(0.05)

    account.ws_faults.append(WsFault("gap", ASSET_DETAIL, count=5))
    with trio.fail_after(10):
        while sim.state.snapshots[key] < 2:
            await trio.sleep(0.05)
    await trio.sleep(1.0)  # nothing more follows
    assert sim.state.snapshots[key] == 2

    account.ws_faults.append(WsFault("drop"))
    with trio.fail_after(20):
        while sim.state.snapshots[key] < 3:
            await trio.sleep(0.05)
    await trio.sleep(1.0)
    assert sim.state.snapshots[key] == 3
    assert all(sim.state.snapshots[a.gate_id] == 1 for a in enabled(sim) if a is not account)

    account.change_interval = 0  # quiet again; the last push or snapshot is the truth
    await trio.sleep(0.5)
    stats = running.daemon.supervisor.session_stats()[key]
    assert stats.gaps >= 1 and stats.reconnects == 1

    async def stored_is_the_state() -> bool:
        assets = (await running.last_assets()).get(str(key), {})
        details = await running.last_detail()
        return close_to_state(assets, state_assets(account)) and all(
            close_to_state(details.get((str(key), c), {}), state_detail(account, i))
            for i, c in enumerate(CURRENCIES)
        )

    await wait_until(stored_is_the_state, seconds=10)
    gaps = await running.rows(f"SELECT * FROM {schema.SEQUENCE_GAP} WHERE account = '{key}'")
    reasons = {row[gaps[0]["columns"].index("reason")] for row in gaps[0]["values"]}
    assert reasons == {"sequence", "reconnect"}
    assert sim.state.pushed[(key, ASSETS)] >= 3
