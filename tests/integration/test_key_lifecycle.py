"""The key lifecycle against the simulator: grace, make-before-break, faults, shards, rotation.

Rules kept here: trio's autojump clock (the simulator and the collector share a
wall clock that moves with it, so Gate's 60 s activation delay and 80-day
rotations pass instantly); every wait has a deadline; counts are taken at the
simulator (key creations, deletions per key id, pushes) and at the collector's
output channel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from collector.config import Settings
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import Fault
from collector.gate.protocol import ASSET_DETAIL as WS_DETAIL
from collector.gate.protocol import ASSETS as WS_ASSETS
from collector.points import schema
from collector.supervisor.placement import owns as in_shard
from collector.supervisor.supervisor import REPLACE_BACKOFF, UPKEEP_INTERVAL
from tests.helpers import Running, start_running

ACTIVATION = 60.0
GRACE = 300.0
# Long test spans in trio time: fewer pushes keep them quick in real time.
PUSH_INTERVAL = 5.0


@pytest.fixture
async def lsim(nursery: trio.Nursery, wall_clock: Callable[[], float]) -> Simulator:
    """A simulator whose new keys are refused for their first 60 s, as Gate may do."""
    simulator = Simulator.create(accounts=6, clock=wall_clock)
    simulator.state.key_activation_delay = ACTIVATION
    simulator.state.push_interval = PUSH_INTERVAL
    # Gate pushes only what changed: every account changes at each push, so a key
    # that works delivers data (the lifecycle's proof that Gate activated it).
    simulator.state.change_interval = PUSH_INTERVAL
    await simulator.start(nursery)
    return simulator


@pytest.fixture
async def start(
    lsim: Simulator, nursery: trio.Nursery, http: httpx.AsyncClient, wall_clock: Any
) -> AsyncIterator[Callable[..., Any]]:
    """Start a supervisor with its own state dir; returns a coroutine function."""

    async def run(state_dir: Path, shard: str = "0/1", **accounts: Any) -> Running:
        return await start_running(
            nursery,
            lsim,
            http,
            state_dir,
            wall_clock,
            accounts={"shard": shard, "key_activation_grace": GRACE, **accounts},
            snapshots=False,
        )

    yield run


def enabled(sim: Simulator) -> set[int]:
    return {a.gate_id for a in sim.state.accounts.values() if a.status == "enabled"}


async def all_subscribed(sim: Simulator, accounts: set[int], within: float) -> float:
    """Wait until every account has both channels pushed to; the trio time it took."""
    start = trio.current_time()
    with trio.fail_after(within):
        while any(sim.state.active[a] < 2 for a in accounts):
            await trio.sleep(0.5)
    return trio.current_time() - start


def ours(sim: Simulator, account: int, name_prefix: str = "gate-collector-") -> list[str]:
    return [k.key for k in sim.state.keys_of(account) if k.name.startswith(name_prefix)]


async def test_new_keys_get_the_activation_grace_instead_of_being_replaced(
    lsim: Simulator, start: Callable[..., Any], tmp_path: Path, autojump_clock: Any
) -> None:
    await start(tmp_path)
    # Every first key is refused for 60 s: retried within the grace, never replaced.
    await all_subscribed(lsim, enabled(lsim), within=GRACE)
    assert lsim.state.calls["keys_created"] == 6
    assert lsim.state.ws_events["auth_refused"] >= 6
    assert sum(lsim.state.deleted.values()) == 0


async def test_a_dead_key_is_replaced_by_exactly_one_new_key_and_no_working_key_is_deleted(
    lsim: Simulator, start: Callable[..., Any], tmp_path: Path, autojump_clock: Any
) -> None:
    running = await start(tmp_path)
    await all_subscribed(lsim, enabled(lsim), within=GRACE)
    await trio.sleep(GRACE)  # the keys are past their grace: a refusal now means dead
    victim = 100003
    dead = running.key_of(victim)
    lsim.state.revoke(dead)  # deleted on Gate's site behind the collector's back

    await trio.sleep(5)
    await all_subscribed(lsim, {victim}, within=GRACE)
    await trio.sleep(2 * UPKEEP_INTERVAL)  # leave time for any (wrong) extra churn
    assert lsim.state.calls["keys_created"] == 6 + 1
    assert running.key_of(victim) != dead
    assert ours(lsim, victim) == [running.key_of(victim)]
    assert lsim.state.deleted_in_use == Counter()
    assert running.supervisor.stats.key_replacements == 1
    # The other accounts kept their keys and their sessions.
    assert all(len(ours(lsim, a)) == 1 for a in enabled(lsim))


async def test_a_connection_reset_on_key_creation_strands_no_account(
    lsim: Simulator, start: Callable[..., Any], tmp_path: Path, autojump_clock: Any
) -> None:
    running = await start(tmp_path)
    accounts = enabled(lsim)
    await all_subscribed(lsim, accounts, within=GRACE)
    await trio.sleep(GRACE)
    # Gate creates the key, then the connection is reset before the answer: 4 times.
    fault = Fault("/broker/sub_account_keys", count=4, drop_response=True, method="POST")
    lsim.state.faults.append(fault)
    for account in accounts:
        lsim.state.revoke(running.key_of(account))

    await trio.sleep(5)
    took = await all_subscribed(lsim, accounts, within=600)
    assert fault.count == 0  # every reset happened
    # Bound: the backoff of 4 failed creations, Gate's activation delay, the grace
    # retries' backoff ceiling, and a reconnect.
    bound = sum(min(REPLACE_BACKOFF[1], REPLACE_BACKOFF[0] * 2**i) for i in range(4))
    print(f"every account subscribed again after {took:.0f} s (bound {bound + 150:.0f} s)")
    assert took <= bound + ACTIVATION + 60 + 30
    pushed = {a: lsim.state.pushed[(a, WS_ASSETS)] for a in accounts}
    await trio.sleep(3 * UPKEEP_INTERVAL)
    assert all(lsim.state.pushed[(a, WS_ASSETS)] > pushed[a] for a in accounts)
    # The keys whose answers were lost carry this instance's name: retired, once the
    # new keys worked; every account ends with exactly its stored key.
    for account in accounts:
        assert ours(lsim, account) == [running.key_of(account)]
    assert lsim.state.deleted_in_use == Counter()
    assert sum(lsim.state.deleted.values()) == 4


async def test_shards_never_delete_each_others_keys(
    lsim: Simulator, start: Callable[..., Any], tmp_path: Path, autojump_clock: Any
) -> None:
    accounts = enabled(lsim)
    foreign = {a: lsim.state.create_key(a, "gate-collector", [], []).key for a in accounts}
    overlap: Counter[int] = Counter()

    async def watch() -> None:  # seconds during which an account had two sessions
        while True:
            for account in accounts:
                if lsim.state.active[account] > 2:
                    overlap[account] += 1
            await trio.sleep(1.0)

    async with trio.open_nursery() as watcher:
        watcher.start_soon(watch)
        first = await start(tmp_path / "a", shard="0/2")
        second = await start(tmp_path / "b", shard="1/2")
        await all_subscribed(lsim, accounts, within=GRACE)
        await trio.sleep(GRACE)
        # A third instance: shard 0 moves to a new host with a fresh state dir.
        first.scope.cancel()
        third = await start(tmp_path / "c", shard="0/2")
        await trio.sleep(5)
        await all_subscribed(lsim, accounts, within=GRACE)
        await trio.sleep(3 * UPKEEP_INTERVAL)
        watcher.cancel_scope.cancel()

    shard0 = {a for a in accounts if in_shard(a, 0, 2)}
    assert 0 < len(shard0) < len(accounts)
    assert lsim.state.deleted == Counter()  # nobody deleted anything: nothing was theirs
    for account in accounts:
        keys = {k.key for k in lsim.state.keys_of(account)}
        assert foreign[account] in keys  # another tool's (or an older version's) key
        if account in shard0:
            assert {first.key_of(account), third.key_of(account)} <= keys
        else:
            assert second.key_of(account) in keys
    refresh = Settings().accounts.refresh_interval
    assert all(seconds <= refresh for seconds in overlap.values()), overlap
    assert second.supervisor.stats.key_replacements == 0


async def test_old_keys_are_rotated_without_losing_an_update(
    lsim: Simulator, start: Callable[..., Any], tmp_path: Path, autojump_clock: Any
) -> None:
    rotate_after = 900.0
    lsim.state.key_lifetime = 1200.0  # Gate expires unbound keys (after 90 days, here 20 min)
    running = await start(tmp_path, key_rotate_after=rotate_after)
    accounts = enabled(lsim)
    await all_subscribed(lsim, accounts, within=GRACE)
    first_keys = {a: running.key_of(a) for a in accounts}

    with trio.fail_after(rotate_after + 2 * GRACE):
        while running.supervisor.stats.key_rotations < len(accounts):
            await trio.sleep(1.0)
    await trio.sleep(2 * UPKEEP_INTERVAL)
    lsim.state.paused = True  # stop the flow, let what was pushed arrive
    await trio.sleep(5)

    for account in accounts:
        assert running.key_of(account) != first_keys[account]
        assert ours(lsim, account) == [running.key_of(account)]
        sent = lsim.state.pushed[(account, WS_ASSETS)]
        got = running.points[(schema.ASSETS, str(account))]
        assert sent > rotate_after / PUSH_INTERVAL / 2  # pushed to all along
        assert got == sent, (account, got, sent)
    assert lsim.state.calls["keys_created"] == 2 * len(accounts)
    assert lsim.state.deleted_in_use == Counter()


@pytest.mark.parametrize(
    ("accounts", "why"),
    [
        ({"key_ip_whitelist": ["203.0.113.7"]}, "Request IP not in whitelist: 127.0.0.1"),
        (
            {"key_permissions": ["wallet", "spot", "futures"]},
            "API key lacks the permission unified",
        ),
    ],
)
async def test_refusals_no_new_key_can_cure_are_loud_and_never_churn_keys(
    lsim: Simulator,
    start: Callable[..., Any],
    tmp_path: Path,
    autojump_clock: Any,
    accounts: dict[str, Any],
    why: str,
) -> None:
    if "key_permissions" in accounts:
        lsim.state.required_perms = frozenset({"unified"})  # the set asked for lacks it
    with capture_logs() as logs:
        running = await start(tmp_path, **accounts)
        await trio.sleep(3 * GRACE)
    assert lsim.state.calls["keys_created"] == 6  # one key each, never another
    assert sum(lsim.state.active.values()) == 0
    # Gate refuses the subscribe (code 4, FORBIDDEN): the session holds both channels
    # forbidden and retries them slowly (first refusal, then every FORBIDDEN_RETRY =
    # 300 s: 3 tries each in 900 s); the supervisor sees no refused key at all.
    sessions = running.supervisor.session_stats()
    assert set(sessions) == enabled(lsim)
    for stats in sessions.values():
        assert (stats.subscription, stats.connected) == ("forbidden", False)
        assert why in stats.subscription_reason
        assert stats.refusals == 2 * 3
    assert running.supervisor.stats.key_config_refusals == 0
    assert running.supervisor.stats.key_replacements == 0
    # Loud once per channel, not at every slow retry.
    forbidden = [e for e in logs if e["event"] == "subscription_forbidden"]
    assert all(why in e["reason"] for e in forbidden)
    assert Counter((e["account"], e["channel"]) for e in forbidden) == {
        (a, c): 1 for a in enabled(lsim) for c in (WS_ASSETS, WS_DETAIL)
    }


async def test_keys_bound_to_the_collectors_address_work_and_are_never_rotated(
    lsim: Simulator, start: Callable[..., Any], tmp_path: Path, autojump_clock: Any
) -> None:
    lsim.state.key_lifetime = 600.0  # would expire unbound keys: bound ones never do
    running = await start(tmp_path, key_ip_whitelist=["127.0.0.1"], key_rotate_after=300.0)
    await all_subscribed(lsim, enabled(lsim), within=GRACE)
    await trio.sleep(1000)
    await all_subscribed(lsim, enabled(lsim), within=1)
    assert lsim.state.calls["keys_created"] == 6
    assert running.supervisor.stats.key_rotations == 0


async def test_a_young_key_deleted_on_gate_is_replaced_without_waiting_the_grace(
    lsim: Simulator, start: Callable[..., Any], tmp_path: Path, autojump_clock: Any
) -> None:
    running = await start(tmp_path)
    await trio.sleep(10)  # the first keys are not active yet: sessions are being refused
    victim = 100002
    dead = running.key_of(victim)
    lsim.state.revoke(dead)
    took = await all_subscribed(lsim, enabled(lsim), within=GRACE)
    assert took < GRACE / 2  # Gate no longer has the key: no activation to wait for
    assert running.key_of(victim) != dead
    assert lsim.state.calls["keys_created"] == 6 + 1
