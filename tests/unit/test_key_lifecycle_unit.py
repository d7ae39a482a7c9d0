"""KeyLifecycle: find, wait for, replace and retire one account's key.

Rules kept here: trio's autojump clock; a fake broker and provisioner
(tests/unit/fakes.py) that record each key created or retired with its trio time;
backoff waits come from a seeded rng, so the tests compute the exact waits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import trio

from collector.base.backoff import backoff_delay
from collector.gate.broker import BrokerClient
from collector.gate.errors import GateError, NotFoundError
from collector.gate.protocol import AuthenticationFailed
from collector.keys import KeyProvisioner, KeyStore, KeyStoreWriteError, StoredKey
from collector.keys.lifecycle import (
    GRACE_BACKOFF,
    REPLACE_BACKOFF,
    KeyLifecycle,
    KeyState,
    KeyStats,
)
from tests.unit.fakes import FakeBroker, FakeProvisioner, FakeStore, account

SEED = 5
ACCOUNT = 7
OLD = StoredKey(ACCOUNT, "k0", "secret", created_at=1.0)


@dataclass
class Keys:
    """A lifecycle on fakes; the account has the stored key ``k0``."""

    lifecycle: KeyLifecycle
    store: FakeStore
    provisioner: FakeProvisioner
    broker: FakeBroker
    stats: KeyStats
    gone: list[tuple[int, str]] = field(default_factory=list)

    def created(self) -> list[str]:
        """The keys created, in order."""
        return [key for _, _, key in self.provisioner.created]


@pytest.fixture
def keys() -> Keys:
    """The lifecycle with a seeded rng (``waits`` draws the same numbers)."""
    store = FakeStore()
    store.put(OLD)
    provisioner = FakeProvisioner(store)
    broker = FakeBroker({ACCOUNT: account(ACCOUNT)})
    stats = KeyStats()
    gone: list[tuple[int, str]] = []
    lifecycle = KeyLifecycle(
        cast(BrokerClient, broker),
        cast(KeyStore, store),
        cast(KeyProvisioner, provisioner),
        random.Random(SEED),
        stats,
        gone=lambda key, reason: gone.append((key.account.gate_id, reason)),
    )
    return Keys(lifecycle, store, provisioner, broker, stats, gone)


def waits(backoff: tuple[float, float], *failures: int) -> list[float]:
    """The waits the lifecycle draws after these consecutive failure counts."""
    rng = random.Random(SEED)
    return [backoff_delay(n, *backoff, rng) for n in failures]


def refused(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(ACCOUNT, reason)


def state() -> KeyState:
    return KeyState(account(ACCOUNT))


async def test_the_stored_key_is_used_as_it_is(keys: Keys, autojump_clock: Any) -> None:
    key = state()
    assert await keys.lifecycle.key_for(key) == OLD
    assert keys.created() == [] and not key.retire_pending


async def test_an_account_without_a_key_gets_one_and_its_twins_are_retired_later(
    keys: Keys, autojump_clock: Any
) -> None:
    keys.store.keys.clear()
    key = state()
    stored = await keys.lifecycle.key_for(key)
    assert stored is not None and stored.key == "k1"
    assert key.retire_pending  # a lost answer may have left a twin of it on Gate
    assert keys.stats.keyless == {}


async def test_a_failed_creation_is_retried_with_backoff_and_the_account_shown_keyless(
    keys: Keys, autojump_clock: Any
) -> None:
    keys.store.keys.clear()
    keys.provisioner.create_failures += [GateError("502"), KeyStoreWriteError("disk full")]
    key = state()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keys.lifecycle.key_for, key)
        await trio.sleep(1)
        assert keys.stats.keyless == {ACCOUNT: "acct7"}
    assert [t for t, _, _ in keys.provisioner.created] == [
        pytest.approx(sum(waits(REPLACE_BACKOFF, 1, 2)))
    ]
    assert keys.stats.key_errors == 2
    assert keys.stats.keyless == {}


async def test_an_account_gone_on_gate_gets_no_key_and_stops(
    keys: Keys, autojump_clock: Any
) -> None:
    keys.store.keys.clear()
    keys.broker.accounts.clear()
    keys.provisioner.create_failures.append(
        NotFoundError(404, "USER_NOT_FOUND", "no such sub-account")
    )
    assert await keys.lifecycle.key_for(state()) is None
    assert keys.gone == [(ACCOUNT, "account gone")]


@pytest.mark.parametrize(
    "reason",
    [
        "READ_ONLY: the key is read-only",
        "FORBIDDEN: missing permission unified",
        "IP_FORBIDDEN: 1.2.3.4 not in the whitelist",
    ],
)
async def test_a_refusal_no_new_key_can_cure_keeps_the_key_and_waits(
    keys: Keys, autojump_clock: Any, reason: str
) -> None:
    key = state()
    start = trio.current_time()
    assert await keys.lifecycle.recover_key(key, OLD, refused(reason))
    assert keys.created() == []  # no churn: the README's promise
    assert keys.stats.key_config_refusals == 1
    assert key.refusals == 1
    assert trio.current_time() - start == pytest.approx(waits(REPLACE_BACKOFF, 1)[0])


async def test_config_refusals_in_a_row_wait_longer_each_time(
    keys: Keys, autojump_clock: Any
) -> None:
    key = state()
    start = trio.current_time()
    for _ in range(3):
        await keys.lifecycle.recover_key(key, OLD, refused("READ_ONLY"))
    assert trio.current_time() - start == pytest.approx(sum(waits(REPLACE_BACKOFF, 1, 2, 3)))
    assert keys.stats.key_config_refusals == 3 and keys.created() == []


async def test_a_young_key_gate_still_has_is_given_the_activation_grace(
    keys: Keys, autojump_clock: Any
) -> None:
    keys.provisioner.grace.add("k0")
    keys.provisioner.on_gate = {"k0"}
    start = trio.current_time()
    assert await keys.lifecycle.recover_key(state(), OLD, refused("INVALID_KEY"))
    assert keys.created() == []
    assert trio.current_time() - start == pytest.approx(waits(GRACE_BACKOFF, 1)[0])


async def test_a_young_key_is_given_the_grace_when_gate_cannot_say_if_it_has_it(
    keys: Keys, autojump_clock: Any
) -> None:
    keys.provisioner.grace.add("k0")
    keys.provisioner.on_gate = None
    assert await keys.lifecycle.recover_key(state(), OLD, refused("INVALID_KEY"))
    assert keys.created() == []


async def test_a_young_key_deleted_on_gate_is_replaced_at_once(
    keys: Keys, autojump_clock: Any
) -> None:
    keys.provisioner.grace.add("k0")
    keys.provisioner.on_gate = set()
    assert await keys.lifecycle.recover_key(state(), OLD, refused("INVALID_KEY"))
    assert keys.created() == ["k1"]
    assert trio.current_time() == 0


async def test_grace_retries_wait_at_most_a_minute(keys: Keys, autojump_clock: Any) -> None:
    keys.provisioner.grace.add("k0")
    keys.provisioner.on_gate = {"k0"}
    start = trio.current_time()
    key = KeyState(account(ACCOUNT), refusals=9)
    assert await keys.lifecycle.recover_key(key, OLD, refused("INVALID_KEY"))
    assert trio.current_time() - start == pytest.approx(waits(GRACE_BACKOFF, 10)[0])
    assert trio.current_time() - start <= GRACE_BACKOFF[1]


async def test_a_dead_key_is_replaced_by_one_successor_stored_first(
    keys: Keys, autojump_clock: Any
) -> None:
    keys.provisioner.on_gate = {"k0"}  # past its grace, Gate's having it does not matter
    key = state()
    assert await keys.lifecycle.recover_key(key, OLD, refused("INVALID_KEY"))
    assert keys.created() == ["k1"]
    stored = keys.store.get(ACCOUNT)
    assert stored is not None and stored.key == "k1"
    assert key.retire_pending  # k0 goes once k1 delivered
    assert key.replacements == 1 and keys.stats.key_replacements == 1
    assert key.refusals == 1


async def test_a_key_is_never_replaced_twice(keys: Keys, autojump_clock: Any) -> None:
    # Two sessions (say, the old one and its rotation's) refused with the same key.
    first, second = state(), state()
    assert await keys.lifecycle.recover_key(first, OLD, refused("INVALID_KEY"))
    assert await keys.lifecycle.recover_key(second, OLD, refused("INVALID_KEY"))
    assert keys.created() == ["k1"]
    assert keys.stats.key_replacements == 1
    assert second.retire_pending  # the key k1 replaced still goes


async def test_a_failed_replacement_keeps_the_old_key_stored_and_is_retried(
    keys: Keys, autojump_clock: Any
) -> None:
    keys.provisioner.create_failures += [GateError("502"), GateError("502")]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keys.lifecycle.recover_key, state(), OLD, refused("INVALID_KEY"))
        await trio.sleep(1)
        assert keys.store.get(ACCOUNT) == OLD  # never keyless meanwhile
    assert [t for t, _, _ in keys.provisioner.created] == [
        pytest.approx(sum(waits(REPLACE_BACKOFF, 1, 2)))
    ]
    assert keys.created() == ["k1"] and keys.stats.key_errors == 2


async def test_a_disabled_account_is_given_up_not_replaced(keys: Keys, autojump_clock: Any) -> None:
    keys.broker.accounts[ACCOUNT] = account(ACCOUNT, status="disabled")
    assert not await keys.lifecycle.recover_key(state(), OLD, refused("INVALID_KEY"))
    assert keys.gone == [(ACCOUNT, "account disabled")]
    assert keys.created() == []


async def test_an_account_gone_on_gate_is_given_up_not_replaced(
    keys: Keys, autojump_clock: Any
) -> None:
    keys.broker.accounts.clear()
    assert not await keys.lifecycle.recover_key(state(), OLD, refused("INVALID_KEY"))
    assert keys.gone == [(ACCOUNT, "account gone")]
    assert keys.created() == []


async def test_a_clock_refusal_keeps_the_key_and_measures_the_skew_again(
    keys: Keys, autojump_clock: Any
) -> None:
    key = state()
    assert await keys.lifecycle.recover_key(key, OLD, refused("REQUEST_EXPIRED: too old"))
    assert keys.created() == [] and not key.retire_pending
    assert keys.broker.lookups == 1  # the REST call that re-measures the skew


async def test_retire_deletes_replaced_keys_once(keys: Keys, autojump_clock: Any) -> None:
    key = KeyState(account(ACCOUNT), retire_pending=True)
    await keys.lifecycle.retire(key)
    await keys.lifecycle.retire(key)
    assert [account_id for _, account_id in keys.provisioner.retired] == [ACCOUNT]
    assert not key.retire_pending


async def test_retire_does_nothing_when_no_key_was_replaced(
    keys: Keys, autojump_clock: Any
) -> None:
    await keys.lifecycle.retire(state())
    assert keys.provisioner.retired == []


async def test_a_failed_retirement_is_counted_and_left_pending(
    keys: Keys, autojump_clock: Any
) -> None:
    keys.provisioner.retire_failures.append(GateError("502"))
    key = KeyState(account(ACCOUNT), retire_pending=True)
    await keys.lifecycle.retire(key)
    assert key.retire_pending and keys.stats.key_errors == 1
