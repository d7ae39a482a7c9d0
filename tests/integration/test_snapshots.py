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
from collector.gate import snapshot
from collector.gate.errors import RateLimitedError
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


# -- the client: the REST transport's rate limits and clock, per sub-account ---------------


async def test_a_rate_limited_snapshot_waits_for_its_own_accounts_window_only(
    many: Simulator,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    many.state.rate_limit = 2  # per user id and endpoint, in Gate's 10 s windows
    client = SnapshotClient(http, many.rest_url, wall_clock)
    a, b = (own_creds(many, account) for account in (100001, 100002))
    start = trio.current_time()
    with trio.fail_after(60):
        for _ in range(2):
            await client.read(a)
        await client.read(b)  # another account's quota: no wait
        assert trio.current_time() - start < 1.0
        body, _ = await client.read(a)  # the third in a's window: waits for its reset
    assert body.user_id == 100001
    assert 8.0 <= trio.current_time() - start <= 13.0
    assert many.state.snapshots[100001] == 3 and many.state.snapshots[100002] == 1


@pytest.mark.parametrize("refusals", [1, 2])
async def test_one_429_is_waited_out_as_gate_tells_a_second_is_the_schedulers_failure(
    many: Simulator,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
    refusals: int,
) -> None:
    many.state.faults.append(
        Fault("/unified/accounts", count=refusals, status=429, label="TOO_MANY_REQUESTS")
    )
    client = SnapshotClient(http, many.rest_url, wall_clock)
    start = trio.current_time()
    with trio.fail_after(60):
        if refusals == 1:
            body, _ = await client.read(own_creds(many, 100001))
            assert body.user_id == 100001
        else:  # no place of the scheduler held for minutes: its backoff takes over
            with pytest.raises(RateLimitedError):
                await client.read(own_creds(many, 100001))
    waited = trio.current_time() - start
    assert 10.0 <= waited < 20.0  # no reset told: one window, never a spin, never two
    assert client.requests_sent == 2


async def test_a_skewed_gate_is_read_on_its_own_clock_and_every_key_signs_corrected(
    many: Simulator,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    many.state.skew = 120.0  # Gate's clock two minutes ahead: a signature would expire
    client = SnapshotClient(http, many.rest_url, wall_clock)
    with trio.fail_after(60):
        _, read_at = await client.read(own_creds(many, 100001))
        sent_first = client.requests_sent
        _, read_b = await client.read(own_creds(many, 100002))
    assert sent_first == 2  # REQUEST_EXPIRED once, then signed on Gate's time
    assert client.requests_sent == 3  # the next key signs corrected from the start
    assert abs(read_at - many.state.now()) <= 1.5
    assert abs(read_b - many.state.now()) <= 1.5


def own_creds(sim: Simulator, account: int) -> ApiCredentials:
    key = sim.state.create_key(account, "gate-collector", [], [])
    return ApiCredentials(key.key, key.secret)


async def test_the_keys_transports_are_dropped_once_their_quota_is_done(
    many: Simulator,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(snapshot, "PRUNE_FLOOR", 3)
    client = SnapshotClient(http, many.rest_url, wall_clock)
    keys = [own_creds(many, account) for account in range(100001, 100008)]
    with trio.fail_after(120):
        for creds in keys[:3]:
            await client.read(creds)
        await client.read(keys[3])  # the table is full, but every quota still counts
        assert client.keys_held == 4
        await trio.sleep(15)  # Gate's 10 s windows are over: nothing left to remember
        for creds in keys[4:]:
            await client.read(creds)
    assert client.keys_held == 3  # the idle four dropped when the table had doubled
    assert client.requests_sent == 7
    more = [own_creds(many, account) for account in range(100008, 100012)]
    with trio.fail_after(120):
        await trio.sleep(15)
        for creds in more:  # the fourth finds the table doubled again: a second prune
            await client.read(creds)
    assert client.keys_held == 4  # the three idle dropped; three still counting, one new
    assert client.requests_sent == 11  # each request counted once over both prunes
