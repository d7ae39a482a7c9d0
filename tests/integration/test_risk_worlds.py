"""Risk numbers as Gate means them, end to end: the simulator, the collector, a real
InfluxDB, and the dashboards' own queries, in both worlds of the WebSocket's rate unit.

Single-currency, multi-currency and portfolio accounts side by side, busy (pushing)
and quiet (read by REST only, with a ``refresh_time`` of their last change hours
ago), each with a known maintenance margin ratio. ``gate.ws_rate_unit`` is
``auto``: the collector must find out the unit itself. Then the broker overview's
ranking, its "lowest rate" stat and the margin alert (as Grafana sends them,
tests/grafana_eval.py) must give each account its true effective ratio (never a 0
that does not apply, never 100x), riskiest first, and the stale count must be 0.

A second test stamps pushes at whole seconds (the seed's frames have no
``time_ms``) and snapshots many times a second, and proves no snapshot ever
overwrote a push in InfluxDB.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from collector.app.daemon import Daemon, run_daemon
from collector.config import Settings
from collector.devtools import grafana
from collector.devtools.grafana import alerts
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import (
    MULTI_CURRENCY,
    PORTFOLIO,
    SINGLE_CURRENCY,
    SimSubAccount,
)
from collector.gate.protocol import ASSETS
from collector.keys import generate_master_key
from collector.points import schema
from tests.helpers import (
    expand,
    firing,
    panel,
    run_query,
    single_value,
    sort_like_grafana,
    table_rows,
    wait_until,
)
from tests.servers import InfluxServer

HOUR_MS = 3_600_000
BUSY_EVERY = 0.3  # seconds between changes of a busy account


@dataclass(frozen=True)
class Kind:
    """One simulated account: its mode, whether it trades, its true ratio (None: no margin)."""

    name: str
    mode: str
    busy: bool
    ratio: float | None


KINDS = [
    Kind("single-busy", SINGLE_CURRENCY, True, 1.25),
    Kind("multi-quiet", MULTI_CURRENCY, False, 1.4),
    Kind("multi-busy", MULTI_CURRENCY, True, 1.8),
    Kind("single-quiet", SINGLE_CURRENCY, False, 3.5),
    Kind("portfolio-busy-no-margin", PORTFOLIO, True, None),
    Kind("multi-quiet-gates-example", MULTI_CURRENCY, False, 16499.1356783634),
]


@dataclass
class World:
    sim: Simulator
    daemon: Daemon
    influx: InfluxServer
    db: str
    accounts: dict[str, SimSubAccount]  # by kind name
    logs: list[dict[str, Any]]

    def ask(self, query: str, **values: str) -> list[dict[str, Any]]:
        sent = expand(
            query,
            now_ms=int(time.time() * 1000),
            range_s=3600,
            interval_s=1,
            values={k: [v] for k, v in values.items()},
        )
        return run_query(self.influx, self.db, sent)

    def truth(self, kind: Kind) -> float:
        return schema.NO_MARGIN_RATE if kind.ratio is None else kind.ratio

    def account_of(self, row: dict[str, Any]) -> str:
        (name,) = [n for n, a in self.accounts.items() if str(a.gate_id) == row["account"]]
        return name


async def wait_for(condition: Callable[[], Any], seconds: float = 30.0) -> None:
    with trio.fail_after(seconds):
        while not await condition():
            await trio.sleep(0.1)


async def start(
    nursery: trio.Nursery,
    influxdb: InfluxServer,
    tmp_path: Path,
    db: str,
    sim: Simulator,
    accounts: dict[str, Any],
) -> tuple[Daemon, trio.Event, trio.Event]:
    settings = Settings.model_validate(
        {
            "gate": {
                "rest_url": sim.rest_url,
                "ws_url": sim.ws_url,
                "api_key": sim.state.broker.key,
                "api_secret": sim.state.broker.secret,
                "ws_rate_unit": "auto",
            },
            "accounts": accounts,
            "state": {"dir": str(tmp_path / "state"), "master_key": generate_master_key()},
            "influx": {"url": influxdb.url, "database": db, "flush_interval": 0.1},
        }
    )
    stop, done, started = trio.Event(), trio.Event(), []

    async def collector() -> None:
        try:
            await run_daemon(settings, stop=stop, on_start=started.append, stats_interval=0.5)
        finally:
            done.set()

    nursery.start_soon(collector)
    with trio.fail_after(30):
        while not started or not started[0].supervisor.ready.is_set():
            await trio.sleep(0.05)
    return started[0], stop, done


@pytest.fixture(params=["ratio", "percent"])
async def world(
    request: pytest.FixtureRequest, nursery: trio.Nursery, influxdb: InfluxServer, tmp_path: Path
) -> AsyncIterator[World]:
    unit = request.param
    sim = Simulator.create(accounts=len(KINDS))
    sim.state.push_interval = 0.1
    sim.state.rate_limit = 100_000
    sim.state.ws_rate_unit = unit
    sim.state.refresh_time = "last_change"
    accounts = {}
    for kind, account in zip(KINDS, sim.state.accounts.values(), strict=True):
        account.name = account.id = kind.name
        account.mode = kind.mode
        account.margin_ratio = kind.ratio
        account.no_margin = kind.ratio is None
        account.change_interval = BUSY_EVERY if kind.busy else 0
        account.changed_wall = time.time() - 6 * 3600  # quiet: last changed 6 h ago
        accounts[kind.name] = account
    await sim.start(nursery)
    db = f"risk_{unit}"
    with capture_logs() as logs:
        daemon, stop, done = await start(
            nursery, influxdb, tmp_path, db, sim, {"snapshot_interval": 1.5}
        )
        yield World(sim, daemon, influxdb, db, accounts, logs)
        stop.set()
        with trio.fail_after(30):
            await done.wait()


BROKER = grafana.dashboards()["broker-overview.json"]


def ranking(world: World) -> list[dict[str, Any]]:
    table = panel(BROKER, "Closest to liquidation")
    rows = table_rows(world.ask(table["targets"][0]["query"]))
    return sort_like_grafana(rows, table["options"])


def stat(world: World, title: str, **values: str) -> float | None:
    (query,) = [t["query"] for t in panel(BROKER, title)["targets"]]
    return single_value(world.ask(query, **values))


async def test_every_account_ranks_by_its_true_effective_ratio_in_both_unit_worlds(
    world: World,
) -> None:
    expected_order = [k.name for k in sorted(KINDS, key=world.truth)]
    book = world.daemon.supervisor.book

    async def settled() -> bool:
        rows = ranking(world)
        return (
            book.unit.unit is not None
            and [world.account_of(r) for r in rows] == expected_order
            and all(r["maintenance margin rate"] is not None for r in rows)
        )

    await wait_for(settled)
    world.sim.state.paused = True  # no more changes: what is stored now stays
    await trio.sleep(1.5)  # pushes of the last change, a snapshot round, a stats tick

    # what auto decided, and on what evidence (logged once)
    assert book.unit.unit == world.sim.state.ws_rate_unit
    (said,) = [e for e in world.logs if e["event"] == "ws_rate_unit"]
    assert said["unit"] == world.sim.state.ws_rate_unit and said["outcome"] == "decided"
    expected_quotient = 100 if said["unit"] == "percent" else 1
    assert said["ws_over_rest"] == pytest.approx(expected_quotient, rel=0.05)
    print(f"\nws_rate_unit in the {world.sim.state.ws_rate_unit} world: {said}")

    # the ranking: every account's true effective ratio, riskiest first
    by_kind = {k.name: k for k in KINDS}
    rows = ranking(world)
    assert [world.account_of(r) for r in rows] == expected_order
    for row in rows:
        kind = by_kind[world.account_of(row)]
        assert row["maintenance margin rate"] == pytest.approx(world.truth(kind), rel=1e-6)
        assert row["mode"] == kind.mode
    assert stat(world, "Lowest maintenance margin rate") == pytest.approx(1.25)

    # the margin alert: exactly the accounts below 150 %, at their true rates
    (rule,) = [r for r in alerts.rules() if r.uid == "gate-margin-low"]
    fired = firing(world.ask(rule.query), rule.op, rule.threshold)
    names = {label.split("account_label=")[1]: value for label, value in fired.items()}
    assert names == {"single-busy": pytest.approx(1.25), "multi-quiet": pytest.approx(1.4)}

    # quiet accounts read by REST whose refresh_time is 6 h old are not stale
    assert stat(world, "Stale accounts", stale_seconds="900") in (0, None)
    assert all(world.sim.state.pushed[(a.gate_id, ASSETS)] == 0 for a in quiet(world))
    assert all(world.sim.state.pushed[(a.gate_id, ASSETS)] > 0 for a in busy(world))

    # what was stored raw: never 100x, never a 0 rate that does not apply
    for kind in KINDS:
        account = world.accounts[kind.name]
        stored = stored_rates(world, account, kind.mode)
        assert stored, kind.name
        assert max(stored) == pytest.approx(world.truth(kind), rel=1e-6), kind.name
        assert min(stored) == pytest.approx(world.truth(kind), rel=1e-6), kind.name
        if kind.mode == SINGLE_CURRENCY:
            assert not account_level_rates(world, account)  # Gate's 0s: not written

    # /status: each account's mode and the zeros Gate sent that do not apply
    rows_by_id = {row["account"]: row for row in world.daemon.supervisor.account_rows()}
    for kind in KINDS:
        row = rows_by_id[world.accounts[kind.name].gate_id]
        assert row["mode"] == kind.mode
        if kind.mode == SINGLE_CURRENCY:
            assert schema.MAINTENANCE_MARGIN_RATE in row["not_applicable"]  # type: ignore[operator]
    stats = world.daemon.supervisor.stats_fields()
    assert stats[schema.STAT_VALUES_NOT_APPLICABLE] > 0
    assert stats[schema.STAT_WS_RATE_DIVISOR] == expected_quotient


def quiet(world: World) -> list[SimSubAccount]:
    return [world.accounts[k.name] for k in KINDS if not k.busy]


def busy(world: World) -> list[SimSubAccount]:
    return [world.accounts[k.name] for k in KINDS if k.busy]


def stored_rates(world: World, account: SimSubAccount, mode: str) -> list[float]:
    """Every maintenance margin rate stored for the account (pushes and snapshots)."""
    if mode == SINGLE_CURRENCY:
        query = (
            f'SELECT "{schema.DETAIL_MAINTENANCE_MARGIN_RATE}" FROM "{schema.ASSET_DETAIL}" '
            f"WHERE account = '{account.gate_id}' AND currency = 'USDT'"
        )
    else:
        query = (
            f'SELECT "{schema.MAINTENANCE_MARGIN_RATE}" FROM "{schema.ASSETS}" '
            f"WHERE account = '{account.gate_id}'"
        )
    return [row[1] for s in run_query(world.influx, world.db, query) for row in s["values"]]


def account_level_rates(world: World, account: SimSubAccount) -> list[Any]:
    query = (
        f'SELECT "{schema.MAINTENANCE_MARGIN_RATE}", "{schema.INITIAL_MARGIN_RATE}" '
        f"FROM \"{schema.ASSETS}\" WHERE account = '{account.gate_id}'"
    )
    return [row for s in run_query(world.influx, world.db, query) for row in s["values"]]


# -- a snapshot never overwrites a push ------------------------------------------------


def pushed_stamps(sim: Simulator) -> dict[tuple[str, int], str]:
    """The pushed equity at each stamp (the last push of a second wins: same series, same
    time)."""
    pushed: dict[tuple[str, int], str] = {}
    for account, channel, time_ms, values in sim.state.push_log or []:
        if channel == ASSETS:
            pushed[(str(account), time_ms // 1000 * 1000)] = values[""]["e"]
    return pushed


async def test_no_snapshot_ever_overwrites_a_push_at_the_same_timestamp(
    nursery: trio.Nursery, influxdb: InfluxServer, tmp_path: Path
) -> None:
    sim = Simulator.create(accounts=8)  # pushes land at whole seconds: 8 stamps a second
    sim.state.push_interval = 0.05
    sim.state.rate_limit = 100_000
    sim.state.push_time_ms = False  # the seed's frames: stamped at whole seconds
    sim.state.push_log = []
    for account in sim.state.accounts.values():
        account.change_interval = 0.2
    await sim.start(nursery)
    db = "risk_overwrite"
    _, stop, done = await start(
        nursery, influxdb, tmp_path, db, sim, {"snapshot_interval": 0.25, "snapshot_rate": 1000}
    )
    await wait_until(
        lambda: len(pushed_stamps(sim)) >= 32 and sum(sim.state.snapshots.values()) > 40,
        60,
        "32 pushed stamps and 40 snapshots",
    )
    sim.state.paused = True
    await trio.sleep(1.0)
    stop.set()
    with trio.fail_after(30):
        await done.wait()
    pushed = pushed_stamps(sim)
    series = run_query(
        influxdb,
        db,
        f'SELECT "{schema.EQUITY}" FROM "{schema.ASSETS}" GROUP BY "{schema.TAG_ACCOUNT}"',
    )
    stored = {(s["tags"]["account"], row[0]): row[1] for s in series for row in s["values"]}
    snapshots = sum(sim.state.snapshots.values())
    assert len(pushed) > 25 and snapshots > 40, (len(pushed), snapshots)
    overwritten = {
        key: (value, stored.get(key))
        for key, value in pushed.items()
        if stored.get(key) != float(value)
    }
    assert overwritten == {}, f"{len(overwritten)} of {len(pushed)} pushes overwritten"
    # and the snapshots are there too, between the pushes
    assert len(stored) > len(pushed)
