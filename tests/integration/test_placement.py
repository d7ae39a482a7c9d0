"""Rendezvous shard ownership: a partition, stable, and little movement when N grows."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import httpx
import pytest
import trio

from collector.app.plan import random_ids
from collector.app.plan import run as run_plan
from collector.devtools.simulator import Simulator
from collector.supervisor.placement import owner, owns, plan, shard_sizes, smallest_safe_shards
from collector.supervisor.supervisor import Supervisor
from tests.helpers import start_supervisor

IDS = random.Random(15).sample(range(10_000_000, 99_999_999), 10_000)


def test_every_account_has_exactly_one_owner() -> None:
    ids = IDS[:2000]
    shards = [{i for i in ids if owns(i, k, 4)} for k in range(4)]
    assert set().union(*shards) == set(ids)
    assert sum(len(s) for s in shards) == len(ids)
    assert all(400 < len(s) < 600 for s in shards)


def test_ownership_is_a_stable_hash_not_python_hash() -> None:
    # Pinned: a change of the hash would move accounts between running shards.
    assert [owner(i, 17) for i in (100001, 100002, 12345678)] == [5, 8, 13]


@pytest.mark.parametrize("count", [5, 17, 40])
def test_adding_a_shard_moves_at_most_1_3_over_n(count: int) -> None:
    before = [owner(i, count) for i in IDS]
    after = [owner(i, count + 1) for i in IDS]
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(moved) <= 1.3 * len(IDS) / count
    # Only to the new shard: nothing moves between old shards.
    assert {b for _, b in moved} == {count}


def test_plan_numbers_equal_a_direct_count() -> None:
    ids = IDS[:5000]
    result = plan(ids, 17, 300)
    direct = Counter(owner(i, 17) for i in ids)
    assert result.sizes == [direct[k] for k in range(17)]
    assert result.worst == max(direct.values())
    assert result.headroom == 300 - max(direct.values())
    assert result.left_out == sum(max(0, n - 300) for n in direct.values())
    safe = result.safe_shards
    assert max(shard_sizes(ids, safe)) <= 300
    assert max(shard_sizes(ids, safe - 1)) > 300


def test_smallest_safe_shards_of_few_accounts_is_one() -> None:
    assert smallest_safe_shards(IDS[:10], 300) == 1
    assert smallest_safe_shards([], 300) == 1


def test_a_shard_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="shard count must be >= 1, got 0"):
        owner(1, 0)


async def test_plan_command_prints_the_direct_count_and_fails_when_over(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # plan.run directly: cli.main would point the global logger at pytest's capture.
    code = await run_plan(config=None, accounts=600, shards=2, per_ip=290, addresses=1, seed=7)
    out = capsys.readouterr().out
    ids = random_ids(600, 7)
    sizes = Counter(owner(i, 2) for i in ids)
    for shard in (0, 1):
        assert f"{shard:>5}  {sizes[shard]:>8}  {290 - sizes[shard]:>8}" in out
    assert f"worst shard: {max(sizes.values())} accounts" in out
    assert f"smallest safe shard count: {smallest_safe_shards(ids, 290)}" in out
    assert code == 1  # 600 accounts cannot fit 2 x 290


@pytest.fixture
async def real_clock_sim(nursery: trio.Nursery) -> Simulator:
    """A simulator on the real clock: the supervisors' sessions sign with time.time()."""
    simulator = Simulator.create(accounts=30, disabled_every=6)
    simulator.state.rate_limit = 100_000
    await simulator.start(nursery)
    return simulator


async def reshard(supervisor: Supervisor, shard: str) -> None:
    """What a restart with ``accounts.shard = shard`` does, then one refresh (the
    supervisor's own reload takes the shard; a SIGHUP's would keep it)."""
    settings = supervisor.settings
    accounts = settings.accounts.model_copy(update={"shard": shard})
    supervisor.reload(settings.model_copy(update={"accounts": accounts}))
    await supervisor.refresh()


async def test_a_third_shard_added_live_leaves_one_session_per_account(
    real_clock_sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    sim = real_clock_sim
    enabled = {a.gate_id for a in sim.state.accounts.values() if a.status == "enabled"}
    shards = [
        await start_supervisor(sim, tmp_path / str(k), nursery, http, shard=f"{k}/2")
        for k in range(2)
    ]
    assert set(shards[0].session_stats()) | set(shards[1].session_stats()) == enabled
    assert not set(shards[0].session_stats()) & set(shards[1].session_stats())

    shards.append(await start_supervisor(sim, tmp_path / "2", nursery, http, shard="2/3"))
    for k in range(2):
        await reshard(shards[k], f"{k}/3")
    owned = [set(s.session_stats()) for s in shards]
    assert set().union(*owned) == enabled
    assert sum(len(o) for o in owned) == len(enabled)  # disjoint
    assert owned[2] == {a for a in enabled if owner(a, 3) == 2}
    with trio.fail_after(30):  # Gate's side: exactly one subscribed session per account
        while any(sim.state.active[a] != 2 for a in enabled):
            await trio.sleep(0.05)
