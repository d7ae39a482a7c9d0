"""SlotRunner: one account's session loop, its backoff, key upkeep and rotation.

Rules kept here: trio's autojump clock (minutes of backoff pass instantly); fakes of
the broker, the provisioner and the sessions (tests/unit/fakes.py) record what
happened with its trio time; the backoff waits are drawn from a seeded rng, so a
test computes the very waits the runner must have made.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import trio
from structlog.testing import capture_logs

from collector.base.backoff import backoff_delay
from collector.base.timers import Timers
from collector.config import GateSettings
from collector.gate.broker import BrokerClient
from collector.gate.errors import GateError
from collector.keys import KeyPolicy, KeyProvisioner, KeyStore, StoredKey
from collector.keys.lifecycle import KeyLifecycle, KeyState
from collector.points.lineproto import Bundle
from collector.session.session import SessionStats
from collector.supervisor.connections import ConnectionBudget
from collector.supervisor.runner import CRASH_BACKOFF, UPKEEP_INTERVAL, SlotRunner, SlotTask
from collector.supervisor.slot import Slot, SupervisorStats
from tests.unit.fakes import (
    FakeBroker,
    FakeProvisioner,
    FakeSessions,
    FakeStore,
    Plan,
    account,
)

SEED = 11
ACCOUNT = 1


@dataclass
class Rig:
    """A SlotRunner on fakes, its timers running in the test's nursery."""

    runner: SlotRunner
    store: FakeStore
    provisioner: FakeProvisioner
    broker: FakeBroker
    sessions: FakeSessions
    stats: SupervisorStats
    timers: Timers
    nursery: trio.Nursery
    gone: list[tuple[int, str]] = field(default_factory=list)
    tasks: list[SlotTask] = field(default_factory=list)  # as each slot's task reported it

    async def start(self, key: KeyState | None = None) -> Slot:
        """Run a slot for ACCOUNT in the nursery (its task's handle goes to ``tasks``)."""
        slot = Slot(key or KeyState(account(ACCOUNT)), SessionStats(), None)
        self.tasks.append(await self.nursery.start(self.runner.run, slot))
        return slot


@pytest.fixture
async def rig(nursery: trio.Nursery) -> AsyncIterator[Rig]:
    """A runner whose account has the stored key ``k0`` (fresh keys are ``k1``, ...)."""
    store = FakeStore()
    store.put(StoredKey(ACCOUNT, "k0", "secret", created_at=1.0))
    provisioner = FakeProvisioner(store)
    broker = FakeBroker({ACCOUNT: account(ACCOUNT)})
    sessions = FakeSessions()
    stats = SupervisorStats()
    timers = Timers()
    gone: list[tuple[int, str]] = []
    rng = random.Random(SEED)
    keys = KeyLifecycle(
        cast(BrokerClient, broker),
        cast(KeyStore, store),
        cast(KeyProvisioner, provisioner),
        rng,
        stats,
        gone=lambda key, reason: gone.append((key.account.gate_id, reason)),
    )
    send, receive = trio.open_memory_channel[Bundle](10)
    runner = SlotRunner(
        gate=GateSettings,  # called for the current settings: the defaults
        store=cast(KeyStore, store),
        provisioner=cast(KeyProvisioner, provisioner),
        keys=keys,
        points=send,
        known=set(),
        stats=stats,
        snapshots=None,
        rng=rng,
        gate_clock=trio.current_time,
        connect_limiter=trio.CapacityLimiter(4),
        session_factory=cast(Any, sessions),
        timing=None,
        timers=timers,
        connections=ConnectionBudget(lambda: GateSettings().max_connections_per_ip),
    )
    nursery.start_soon(timers.run)
    yield Rig(runner, store, provisioner, broker, sessions, stats, timers, nursery, gone)
    receive.close()


async def test_a_crashing_session_is_restarted_after_a_doubling_backoff(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.sessions.default = Plan(delay=0.0, crash=True)
    rig.sessions.limit = 7
    await rig.start()
    await trio.sleep(2000)
    starts = [run.started for run in rig.sessions.runs[:7]]
    rng = random.Random(SEED)
    rng.uniform(0, UPKEEP_INTERVAL)  # the first upkeep's offset is drawn first
    waits = [backoff_delay(n, *CRASH_BACKOFF, rng) for n in range(1, 7)]
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx(waits)
    assert waits[-1] >= 16.0  # the sixth wait's ceiling is 32 s: the pause grows


async def test_a_refused_key_is_replaced_and_the_session_starts_again_with_the_successor(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.sessions.plans["k0"] = Plan(delay=1.0, refuse="INVALID_KEY")
    slot = await rig.start()
    await trio.sleep(10)
    assert [run.key for run in rig.sessions.runs] == ["k0", "k1"]
    assert [key for _, _, key in rig.provisioner.created] == ["k1"]
    assert slot.key.replacements == 1
    assert slot.key.retire_pending  # k0 goes once k1 delivered
    assert rig.sessions.of("k1")[0].ended is None  # the successor runs on


async def test_a_key_refused_after_delivering_data_is_marked_as_working(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.sessions.plans["k0"] = Plan(delay=1.0, points=3, refuse="INVALID_KEY")
    await rig.start()
    await trio.sleep(10)
    assert rig.provisioner.working == {"k0"}


async def test_a_key_refused_before_it_delivered_is_not_marked_as_working(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.sessions.plans["k0"] = Plan(delay=1.0, refuse="INVALID_KEY")
    await rig.start()
    await trio.sleep(10)
    assert rig.provisioner.working == set()


async def test_the_slot_ends_when_gate_says_its_account_is_gone(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.sessions.plans["k0"] = Plan(delay=1.0, refuse="INVALID_KEY")
    rig.broker.accounts.clear()
    slot = Slot(KeyState(account(ACCOUNT)), SessionStats(), None)
    with trio.fail_after(60):
        await rig.runner.run(slot)  # returns: nothing left to run
    assert rig.gone == [(ACCOUNT, "account gone")]
    assert [run.key for run in rig.sessions.runs] == ["k0"]
    assert rig.provisioner.created == []


async def test_a_slot_that_ended_arms_no_more_upkeep(rig: Rig, autojump_clock: Any) -> None:
    await rig.start()
    await trio.sleep(3 * UPKEEP_INTERVAL)
    rig.tasks[0].stop()
    await trio.sleep(1)
    fired = rig.timers.fired
    await trio.sleep(5 * UPKEEP_INTERVAL)
    assert rig.timers.fired == fired


async def test_rotation_keeps_the_old_session_until_the_successor_delivers(
    rig: Rig, autojump_clock: Any
) -> None:
    # Make before break: k1 takes 100 s to deliver (Gate's activation); k0 runs on.
    rig.provisioner.due.add("k0")
    rig.sessions.plans["k1"] = Plan(delay=100.0)
    await rig.start()
    await trio.sleep(3 * UPKEEP_INTERVAL + 100)
    old, new = rig.sessions.of("k0")[0], rig.sessions.of("k1")[0]
    assert new.first_point is not None and old.ended is not None
    assert new.started < new.first_point == old.ended  # stopped at the successor's first point
    assert rig.stats.key_rotations == 1
    assert new.ended is None  # the successor runs on


async def test_after_a_rotation_the_slots_session_is_the_successors_even_if_the_old_reconnected(
    rig: Rig, autojump_clock: Any
) -> None:
    # k0 crashes at ~70 s, while the successor waits out its 100 s: the old loop
    # reconnects (with the stored key, k1 now) before the successor delivers.
    rig.provisioner.due.add("k0")
    rig.sessions.plans["k0"] = Plan(delay=1.0, crash=True, points=69)
    rig.sessions.plans["k1"] = Plan(delay=100.0)
    slot = await rig.start()
    await trio.sleep(200)
    successor, _reconnected = (s for s in rig.sessions.made if s.key == "k1")
    assert rig.stats.key_rotations == 1
    assert slot.session is successor  # a SIGHUP's currencies reach the live session
    assert rig.sessions.of("k1")[1].ended is not None  # the old loop's is stopped


async def test_rotation_retires_the_old_key_after_its_session_stopped(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.provisioner.due.add("k0")
    slot = await rig.start()
    await trio.sleep(3 * UPKEEP_INTERVAL)
    old = rig.sessions.of("k0")[0]
    assert old.ended is not None
    assert [t for t, _ in rig.provisioner.retired] == [old.ended]
    assert not slot.key.retire_pending


async def test_rotation_carries_the_old_sessions_counters_over(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.provisioner.due.add("k0")
    slot = await rig.start()
    await trio.sleep(3 * UPKEEP_INTERVAL)
    old, new = rig.sessions.of("k0")[0], rig.sessions.of("k1")[0]
    assert old.points > 0 and new.points > 0
    assert slot.stats is rig.sessions.made[-1].stats
    assert slot.stats.points == old.points + new.points


async def test_a_failed_rotation_is_tried_again_at_the_next_upkeep(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.provisioner.due.add("k0")
    rig.provisioner.create_failures.append(GateError("Gate answered 502"))
    await rig.start()
    await trio.sleep(4 * UPKEEP_INTERVAL)
    assert rig.stats.key_errors == 1
    assert [key for _, _, key in rig.provisioner.created] == ["k1"]
    assert rig.stats.key_rotations == 1
    assert len(rig.sessions.of("k0")) == 1 and rig.sessions.of("k0")[0].ended is not None


async def test_no_rotation_before_the_session_delivers(rig: Rig, autojump_clock: Any) -> None:
    rig.provisioner.due.add("k0")
    rig.sessions.plans["k0"] = Plan(delay=10 * UPKEEP_INTERVAL)
    await rig.start()
    await trio.sleep(9 * UPKEEP_INTERVAL)
    assert rig.provisioner.attempts == 0
    await trio.sleep(3 * UPKEEP_INTERVAL)  # it delivers now: rotated at an upkeep after
    assert [key for _, _, key in rig.provisioner.created] == ["k1"]


async def test_replaced_keys_are_retired_at_the_first_upkeep_after_delivery(
    rig: Rig, autojump_clock: Any
) -> None:
    slot = await rig.start(KeyState(account(ACCOUNT), retire_pending=True))
    await trio.sleep(2 * UPKEEP_INTERVAL)
    assert len(rig.provisioner.retired) == 1
    assert not slot.key.retire_pending
    await trio.sleep(5 * UPKEEP_INTERVAL)
    assert len(rig.provisioner.retired) == 1  # retired once, not at every upkeep


async def test_an_upkeep_after_delivery_forgets_earlier_refusals(
    rig: Rig, autojump_clock: Any
) -> None:
    slot = await rig.start(KeyState(account(ACCOUNT), refusals=4))
    await trio.sleep(2 * UPKEEP_INTERVAL)
    assert slot.key.refusals == 0


async def test_a_key_rotated_once_is_not_rotated_again(rig: Rig, autojump_clock: Any) -> None:
    rig.provisioner.due.add("k0")
    await rig.start()
    await trio.sleep(20 * UPKEEP_INTERVAL)
    assert [key for _, _, key in rig.provisioner.created] == ["k1"]
    assert [run.key for run in rig.sessions.runs] == ["k0", "k1"]


async def test_a_successor_that_never_delivers_beside_the_old_one_goes_break_before_make(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.provisioner.due.add("k0")
    rig.sessions.plans["k1"] = Plan(delay=10_000.0)  # Gate refuses its connection, say
    await rig.start()
    with capture_logs() as logs:
        await trio.sleep(KeyPolicy().activation_grace + 4 * UPKEEP_INTERVAL)
    stalled = [e for e in logs if e["event"] == "key_rotate_successor_stalled"]
    assert len(stalled) == 1
    assert rig.stats.key_rotations_break_before_make == 1
    old = rig.sessions.of("k0")[0]
    assert old.ended is not None  # the old session made room for the new key's


async def test_a_restart_closes_the_session_then_connects_again_with_its_key_and_counters(
    rig: Rig, autojump_clock: Any
) -> None:
    slot = await rig.start(KeyState(account(ACCOUNT), retire_pending=True))
    await trio.sleep(10)
    before = slot.stats.points
    rig.tasks[0].restart()
    await trio.sleep(10)
    old, new = rig.sessions.of("k0")
    assert old.ended is not None and old.ended <= new.started  # closed, then connected
    assert new.ended is None
    assert slot.stats is rig.sessions.made[-1].stats
    assert slot.stats.points == before + new.points  # the counters carry over
    assert slot.key.retire_pending  # still retired once the new session delivers


async def test_a_restart_during_a_rotation_leaves_one_session_with_the_new_key(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.provisioner.due.add("k0")
    rig.sessions.plans["k1"] = Plan(delay=100.0)  # Gate's activation: k0 runs on meanwhile
    await rig.start()
    await trio.sleep(3 * UPKEEP_INTERVAL)
    assert [run.key for run in rig.sessions.runs] == ["k0", "k1"]  # side by side
    rig.tasks[0].restart()
    await trio.sleep(10)
    assert all(run.ended is not None for run in rig.sessions.runs[:2])
    assert [run.key for run in rig.sessions.runs[2:]] == ["k1"]  # the stored key, alone
    assert rig.sessions.runs[2].ended is None


async def test_a_stopped_slot_closes_every_session_of_its_rotation(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.provisioner.due.add("k0")
    rig.sessions.plans["k1"] = Plan(delay=100.0)
    await rig.start()
    await trio.sleep(3 * UPKEEP_INTERVAL)
    rig.tasks[0].stop()
    await trio.sleep(1)
    assert [run.key for run in rig.sessions.runs] == ["k0", "k1"]
    assert all(run.ended is not None for run in rig.sessions.runs)
