"""SlotTable: which accounts have a session, on which source address, and their keys.

Rules kept here: a fake runner (a slot's task reports its SlotTask and waits until it
is stopped, counting its rounds),
the fake provisioner of tests/unit/fakes.py, a real SnapshotScheduler that is never
run (only its schedule is read); trio's autojump clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from collector.config import GateSettings
from collector.gate.snapshot import SnapshotClient
from collector.keys import KeyProvisioner, StoredKey
from collector.keys.lifecycle import KeyState
from collector.points.lineproto import Bundle
from collector.supervisor.connections import ConnectionBudget
from collector.supervisor.runner import SlotRunner, SlotTask
from collector.supervisor.slot import Slot, SupervisorStats
from collector.supervisor.snapshots import SnapshotScheduler
from collector.supervisor.table import SlotTable
from tests.unit.fakes import FakeProvisioner, FakeSession, FakeSessions, FakeStore, account


@dataclass
class FakeRunner:
    """Runs a slot until it is stopped; remembers every slot it ran and ended, and the
    rounds (a first start, then one per restart) of each account."""

    running: list[Slot] = field(default_factory=list)
    ended: list[Slot] = field(default_factory=list)
    rounds: Counter[int] = field(default_factory=Counter)
    # Called once a slot's task has reported itself, before its first round (what
    # other tasks may do while the table waits in nursery.start).
    on_started: Callable[[Slot], None] = lambda slot: None

    async def run(
        self, slot: Slot, *, task_status: trio.TaskStatus[SlotTask] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Wait, as a session would, until the slot is stopped; a restart is a new round."""
        task = SlotTask()
        task_status.started(task)
        self.on_started(slot)
        self.running.append(slot)
        try:
            with task.scope:
                while True:
                    with task.next_round():
                        self.rounds[slot.account.gate_id] += 1
                        await trio.sleep_forever()
        finally:
            self.running.remove(slot)
            self.ended.append(slot)


@dataclass
class Table:
    """A SlotTable on fakes with the settings a test may change."""

    table: SlotTable
    runner: FakeRunner
    provisioner: FakeProvisioner
    store: FakeStore
    stats: SupervisorStats
    snapshots: SnapshotScheduler
    gate: list[GateSettings]

    async def reconcile(self, *ids: int) -> None:
        """Reconcile with these enabled accounts, then let the started tasks run."""
        await self.table.reconcile({i: account(i) for i in ids})
        await trio.testing.wait_all_tasks_blocked()

    def addresses(self) -> dict[int, str | None]:
        """The source address of each slot."""
        return {a: slot.local_address for a, slot in self.table.slots.items()}


@pytest.fixture
async def table(nursery: trio.Nursery) -> AsyncIterator[Table]:
    """Two source addresses, two connections each: room for four sessions."""
    gate = [GateSettings(max_connections_per_ip=2, source_addresses=["10.0.0.1", "10.0.0.2"])]
    store = FakeStore()
    provisioner = FakeProvisioner(store)
    stats = SupervisorStats()
    runner = FakeRunner()
    send, receive = trio.open_memory_channel[Bundle](1)
    snapshots = SnapshotScheduler(
        cast(SnapshotClient, None), lambda _: None, send, interval=60.0, rate=10.0
    )
    slot_table = SlotTable(
        lambda: gate[0],
        cast(SlotRunner, runner),
        cast(KeyProvisioner, provisioner),
        stats,
        snapshots,
        ConnectionBudget(lambda: gate[0].max_connections_per_ip),
    )
    await nursery.start(slot_table.run)
    yield Table(slot_table, runner, provisioner, store, stats, snapshots, gate)
    receive.close()


async def test_new_accounts_get_a_key_and_a_session_spread_over_the_addresses(
    table: Table, autojump_clock: Any
) -> None:
    await table.reconcile(1, 2, 3)
    assert sorted(table.table.slots) == [1, 2, 3]
    assert sorted(s.account.gate_id for s in table.runner.running) == [1, 2, 3]
    assert list(table.addresses().values()) == ["10.0.0.1", "10.0.0.2", "10.0.0.1"]
    assert sorted(table.store.keys) == [1, 2, 3]
    assert all(table.snapshots.status(a) is not None for a in (1, 2, 3))


async def test_a_fresh_key_has_its_twins_retired_and_a_reused_one_not(
    table: Table, autojump_clock: Any
) -> None:
    table.store.put(StoredKey(2, "old", "secret"))
    await table.reconcile(1, 2)
    assert table.table.slots[1].key.retire_pending
    assert not table.table.slots[2].key.retire_pending


async def test_accounts_beyond_the_capacity_get_no_key_and_are_logged_once(
    table: Table, autojump_clock: Any
) -> None:
    with capture_logs() as logs:
        await table.reconcile(1, 2, 3, 4, 5, 6)
        await table.reconcile(1, 2, 3, 4, 5, 6)
    assert sorted(table.table.slots) == [1, 2, 3, 4]
    assert table.stats.over_capacity == {5, 6}
    assert sorted(table.store.keys) == [1, 2, 3, 4]  # no key for an account with no session
    assert [e["account"] for e in logs if e["event"] == "over_capacity"] == [5, 6]


async def test_running_sessions_count_against_the_capacity(
    table: Table, autojump_clock: Any
) -> None:
    await table.reconcile(1, 2, 3)
    await table.reconcile(1, 2, 3, 4, 5)
    assert sorted(table.table.slots) == [1, 2, 3, 4]
    assert table.stats.over_capacity == {5}
    assert table.provisioner.ensured == [[1, 2, 3], [4]]


async def test_an_account_that_left_frees_its_address_for_an_account_over_capacity(
    table: Table, autojump_clock: Any
) -> None:
    await table.reconcile(1, 2, 3, 4, 5)
    freed = table.addresses()[2]
    await table.reconcile(1, 3, 4, 5)
    assert sorted(table.table.slots) == [1, 3, 4, 5]
    assert table.addresses()[5] == freed
    assert table.stats.over_capacity == set()
    assert [s.account.gate_id for s in table.runner.ended] == [2]
    assert table.snapshots.status(2) is None


async def test_an_account_whose_key_could_not_be_made_is_shown_keyless_and_tried_again(
    table: Table, autojump_clock: Any
) -> None:
    table.provisioner.ensure_fails.add(2)
    await table.reconcile(1, 2)
    assert table.stats.keyless == {2: "acct2"}
    assert sorted(table.table.slots) == [1, 2]  # its session retries the creation
    table.provisioner.ensure_fails.clear()
    await table.reconcile(1, 2)
    assert table.provisioner.ensured[-1] == [2]
    assert table.stats.keyless == {}
    assert table.table.slots[2].key.retire_pending  # created now: its twins go later
    assert len(table.runner.ended) == 0  # the same session picks the key up


async def test_a_keyless_account_that_left_is_no_longer_shown(
    table: Table, autojump_clock: Any
) -> None:
    table.provisioner.ensure_fails.add(2)
    await table.reconcile(1, 2)
    await table.reconcile(1)
    assert table.stats.keyless == {}


async def test_gone_forgets_the_account_of_the_current_key_only(
    table: Table, autojump_clock: Any
) -> None:
    await table.reconcile(1, 2, 3)  # 1 and 3 on 10.0.0.1, 2 on 10.0.0.2
    stale = KeyState(account(1))
    table.table.gone(stale, "account gone")  # a slot restarted since: not this one
    assert sorted(table.table.slots) == [1, 2, 3]
    table.table.gone(table.table.slots[1].key, "account gone")
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(table.table.slots) == [2, 3]
    assert [s.account.gate_id for s in table.runner.ended] == [1]
    assert table.snapshots.status(1) is None
    await table.reconcile(2, 3, 4)  # 1's place on 10.0.0.1 is free again
    assert table.addresses()[4] == "10.0.0.1"


async def test_restart_all_restarts_every_slots_session_and_keeps_its_slot(
    table: Table, autojump_clock: Any
) -> None:
    await table.reconcile(1, 2)
    before = dict(table.table.slots)
    table.table.restart_all()
    await trio.testing.wait_all_tasks_blocked()
    assert table.runner.rounds == {1: 2, 2: 2}
    assert table.runner.ended == []
    assert table.table.slots == before  # the same slots: key, counters, address


async def test_a_slot_restarted_while_it_was_being_started_restarts_too(
    table: Table, autojump_clock: Any
) -> None:
    await table.reconcile(1)
    table.runner.on_started = lambda slot: table.table.restart_all()
    await table.reconcile(1, 2)
    assert table.runner.rounds == {1: 2, 2: 2}


async def test_a_slot_gone_while_it_was_being_started_is_stopped(
    table: Table, autojump_clock: Any
) -> None:
    table.runner.on_started = lambda slot: table.table.gone(slot.key, "account gone")
    await table.reconcile(1)
    assert table.table.slots == {}
    assert [s.account.gate_id for s in table.runner.ended] == [1]


async def test_a_currency_change_reaches_every_running_session(
    table: Table, autojump_clock: Any
) -> None:
    await table.reconcile(1, 2)
    sessions = FakeSessions()
    made = [FakeSession(sessions, a, "k") for a in (1, 2)]
    for slot, session in zip(table.table.slots.values(), made, strict=True):
        slot.session = cast(Any, session)
    table.table.change_currencies(GateSettings(currencies=["BTC"]))
    assert [s.currency_changes for s in made] == [1, 1]


def test_the_capacity_is_connections_per_address_times_addresses() -> None:
    gate = [GateSettings(max_connections_per_ip=3, source_addresses=["10.0.0.1", "10.0.0.2"])]
    table = SlotTable(
        lambda: gate[0],
        cast(SlotRunner, None),
        cast(KeyProvisioner, None),
        SupervisorStats(),
        None,
        ConnectionBudget(lambda: gate[0].max_connections_per_ip),
    )
    assert table.capacity == 6
    gate[0] = GateSettings(max_connections_per_ip=3)
    assert table.capacity == 3  # the default route counts as one address
