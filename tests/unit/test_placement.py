"""Rendezvous placement by value, on a dozen accounts: fast enough for mutation testing."""

from __future__ import annotations

import pytest

from collector.supervisor.placement import (
    Plan,
    owner,
    owns,
    plan,
    shard_sizes,
    smallest_safe_shards,
    weight,
)

IDS = list(range(1, 13))
# owner(u, 3) of IDS, pinned: a change of the hash would move accounts between shards.
OWNERS_OF_3 = [0, 2, 1, 1, 0, 0, 2, 2, 2, 1, 2, 1]


def test_the_weight_is_pinned_blake2b_of_shard_and_account() -> None:
    assert weight(0, 1) == 17449080249234257484
    assert weight(3, 100001) == 1712410597071317493
    assert weight(0, 1) != weight(1, 0)  # "shard:account", not a symmetric mix


def test_the_owner_is_the_shard_of_highest_weight() -> None:
    assert [owner(u, 3) for u in IDS] == OWNERS_OF_3
    for u in IDS:
        weights = [weight(k, u) for k in range(5)]
        assert owner(u, 5) == weights.index(max(weights))


def test_one_shard_owns_everything() -> None:
    assert {owner(u, 1) for u in IDS} == {0}
    assert all(owns(u, 0, 1) for u in IDS)


@pytest.mark.parametrize("count", [0, -1])
def test_a_shard_count_below_one_is_refused_with_the_count(count: int) -> None:
    with pytest.raises(ValueError) as raised:
        owner(1, count)
    assert str(raised.value) == f"shard count must be >= 1, got {count}"


def test_owns_is_true_only_for_the_owner() -> None:
    for u, k in zip(IDS, OWNERS_OF_3, strict=True):
        assert [owns(u, index, 3) for index in range(3)] == [index == k for index in range(3)]


def test_shard_sizes_count_each_owner() -> None:
    assert shard_sizes(IDS, 3) == [3, 4, 5]
    assert shard_sizes(iter(IDS), 3) == [3, 4, 5]  # any iterable, read once
    assert shard_sizes([], 4) == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("capacity", "shards"),
    [
        (12, 1),  # everything fits one shard
        (13, 1),
        (6, 2),  # fullest shard exactly at capacity: safe
        (5, 3),  # the lower bound ceil(12 / 5) is already safe: [3, 4, 5]
        (4, 4),  # the lower bound 3 is not safe ([3, 4, 5]): one more
        (1, 21),
    ],
)
def test_smallest_safe_shards_is_the_first_count_that_fits(capacity: int, shards: int) -> None:
    assert smallest_safe_shards(IDS, capacity) == shards
    assert smallest_safe_shards(iter(IDS), capacity) == shards
    assert max(shard_sizes(IDS, shards)) <= capacity
    if shards > 1:
        assert max(shard_sizes(IDS, shards - 1)) > capacity


def test_no_accounts_need_one_shard() -> None:
    assert smallest_safe_shards([], 1) == 1


@pytest.mark.parametrize("capacity", [0, -3])
def test_a_capacity_below_one_is_refused_with_the_capacity(capacity: int) -> None:
    with pytest.raises(ValueError) as raised:
        smallest_safe_shards(IDS, capacity)
    assert str(raised.value) == f"capacity must be >= 1, got {capacity}"


def test_plan_reports_sizes_against_the_capacity() -> None:
    result = plan(iter(IDS), 3, 4)
    assert result == Plan(accounts=12, shards=3, capacity=4, sizes=[3, 4, 5], safe_shards=4)
    assert (result.worst, result.headroom, result.left_out) == (5, -1, 1)


def test_plan_figures_of_a_plan_that_fits() -> None:
    fits = Plan(accounts=6, shards=3, capacity=4, sizes=[1, 3, 2], safe_shards=2)
    assert (fits.worst, fits.headroom, fits.left_out) == (3, 1, 0)
    over = Plan(accounts=15, shards=3, capacity=4, sizes=[6, 2, 7], safe_shards=5)
    assert (over.worst, over.headroom, over.left_out) == (7, -3, 5)
