"""The snapshot scheduler against the simulator's /unified/accounts, on trio's autojump clock.

Rules these tests keep: loopback, port 0, the autojump clock for anything about
time (an interval of minutes passes at once), every wait with a deadline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import Fault
from collector.gate.signing import ApiCredentials
from collector.gate.snapshot import SnapshotClient
from collector.points import schema
from collector.points.lineproto import Point
from collector.supervisor.snapshots import SnapshotScheduler


@dataclass
class Setup:
    sim: Simulator
    scheduler: SnapshotScheduler
    creds: dict[int, ApiCredentials]
    points: list[Point] = field(default_factory=list)
    # trio time of every snapshot the simulator served
    served: list[float] = field(default_factory=list)


async def setup(
    nursery: trio.Nursery,
    sim: Simulator,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    *,
    interval: float,
    rate: float,
) -> Setup:
    creds = {}
    for account in sim.state.accounts.values():
        key = sim.state.create_key(account.gate_id, "gate-collector", [], [])
        creds[account.gate_id] = ApiCredentials(key.key, key.secret)
    send, receive = trio.open_memory_channel[list[Point]](1000)
    client = SnapshotClient(http, sim.rest_url, wall_clock)
    scheduler = SnapshotScheduler(
        client, creds.get, send, interval=interval, rate=rate, wall_clock=wall_clock
    )
    out = Setup(sim, scheduler, creds)

    async def collect() -> None:
        async for bundle in receive:
            out.points.extend(bundle)

    original = sim.state.snapshots

    class Recording(Counter[int]):
        def __setitem__(self, key: int, value: int) -> None:
            out.served.append(trio.current_time())
            super().__setitem__(key, value)

    sim.state.snapshots = Recording(original)
    nursery.start_soon(collect)
    nursery.start_soon(scheduler.run)
    return out


@pytest.fixture
async def many(nursery: trio.Nursery, wall_clock: Callable[[], float]) -> Simulator:
    simulator = Simulator.create(accounts=120, clock=wall_clock)
    simulator.state.rate_limit = 100_000
    await simulator.start(nursery)
    return simulator


async def test_every_account_is_read_once_per_interval_spread_never_in_a_burst(
    many: Simulator,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = await setup(nursery, many, http, wall_clock, interval=60.0, rate=5.0)
    for account in many.state.accounts.values():
        s.scheduler.add(account.gate_id, account.name)
    await trio.sleep(180.5)
    # three rounds of 120 accounts (a fourth may have begun for a few)
    assert all(3 <= many.state.snapshots[a] <= 4 for a in many.state.accounts)
    per_second = Counter(int(t) for t in s.served)
    assert max(per_second.values()) <= 5  # the instance's rate
    per_10s = Counter(int(t // 10) for t in s.served)
    # 2 per second on average (120 / 60 s), spread: no window holds a burst
    assert max(per_10s.values()) <= 35
    assert s.scheduler.totals.taken == len(s.served) and s.scheduler.totals.failed == 0
    accounts = {dict(p.tags)[schema.TAG_ACCOUNT] for p in s.points}
    assert len(accounts) == 120


async def test_requests_coalesce_and_go_first(
    many: Simulator,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = await setup(nursery, many, http, wall_clock, interval=0, rate=10.0)
    s.scheduler.add(100001, "a")
    s.scheduler.add(100002, "b")
    for _ in range(5):
        s.scheduler.request(100001, "gap")  # five asks while waiting: one snapshot
    s.scheduler.request(100002, "subscribed")
    await trio.sleep(30)
    assert many.state.snapshots[100001] == 1 and many.state.snapshots[100002] == 1
    assert sum(many.state.snapshots.values()) == 2  # interval 0: nothing periodic


async def test_a_failing_snapshot_is_counted_logged_once_and_retried_with_backoff(
    many: Simulator,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    many.state.faults.append(Fault("/unified/accounts", count=4, status=503, label="TOO_BUSY"))
    s = await setup(nursery, many, http, wall_clock, interval=0, rate=10.0)
    s.scheduler.add(100001, "a")
    with capture_logs() as logs:
        s.scheduler.request(100001, "subscribed")
        await trio.sleep(600)
    status = s.scheduler.status(100001)
    assert status is not None
    assert (status.failed, status.taken, status.state) == (4, 1, "ok")
    assert s.scheduler.totals.failed == 4
    events = [e["event"] for e in logs if e["event"].startswith("snapshot_")]
    assert events == ["snapshot_failing", "snapshot_recovered"]  # once per change


async def test_an_account_not_in_unified_mode_is_its_own_state(
    many: Simulator,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    many.state.accounts[100003].unified = False
    s = await setup(nursery, many, http, wall_clock, interval=0, rate=10.0)
    s.scheduler.add(100003, "c")
    s.scheduler.request(100003, "subscribed")
    await trio.sleep(10)
    status = s.scheduler.status(100003)
    assert status is not None and status.state == "not_unified"
    assert "ACCOUNT_NOT_UNIFIED" in status.reason
    assert s.points == []


async def test_a_key_of_another_account_writes_nothing(
    many: Simulator,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = await setup(nursery, many, http, wall_clock, interval=0, rate=10.0)
    s.creds[100001] = s.creds[100002]  # the store paired the wrong key
    s.scheduler.add(100001, "a")
    s.scheduler.request(100001, "subscribed")
    await trio.sleep(10)
    status = s.scheduler.status(100001)
    assert status is not None and status.state == "failing"
    assert "100002" in status.reason
    assert s.points == []
