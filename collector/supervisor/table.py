"""The running slots: which accounts have a session, and on which source address.

Reconciling a discovery with the slots stops the sessions of accounts that were
disabled or vanished, gives new accounts a key (:class:`~collector.keys.KeyProvisioner`)
and starts each on the least-used source address while ``gate.max_connections_per_ip``
leaves room there. Accounts beyond that capacity get no key and no session; they
are logged once and counted, so the operator knows to add a shard or an address.

The slots' tasks run in the nursery of :meth:`SlotTable.run`: the table starts each
with ``nursery.start`` and keeps the :class:`~collector.supervisor.runner.SlotTask`
it reports, to stop the slot or restart its session.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import trio

from collector.base.logging import get_logger
from collector.config import GateSettings
from collector.gate.models import SubAccount, label
from collector.keys import KeyProvisioner
from collector.keys.lifecycle import KeyState
from collector.session.session import SessionStats
from collector.supervisor.connections import ConnectionBudget
from collector.supervisor.runner import SlotRunner, SlotTask
from collector.supervisor.slot import Slot, SupervisorStats
from collector.supervisor.snapshots import SnapshotScheduler

log = get_logger(__name__)


class SlotTable:
    """The slots by account id; their tasks run in :meth:`run`'s nursery."""

    def __init__(
        self,
        gate: Callable[[], GateSettings],
        runner: SlotRunner,
        provisioner: KeyProvisioner,
        stats: SupervisorStats,
        snapshots: SnapshotScheduler | None,
        connections: ConnectionBudget,
    ) -> None:
        self._gate = gate  # the current settings (a SIGHUP may change them)
        self._runner = runner
        self._provisioner = provisioner
        self._stats = stats
        self._snapshots = snapshots
        self.slots: dict[int, Slot] = {}
        # Slots by source address: each holds one of Gate's connections per IP there
        # (the budget's own count, so a rotation's extra connection is counted beside).
        self._per_address: Counter[str | None] = connections.slots
        self._tasks: dict[int, SlotTask] = {}  # each slot's task, as it reported itself
        self._restarts = 0  # restart_all calls: a slot started meanwhile restarts too
        self._nursery: trio.Nursery | None = None  # run's own, while it runs

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the slots' tasks until cancelled (they end with it); ready once started."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def reconcile(self, wanted: dict[int, SubAccount]) -> None:
        """Stop what is not ``wanted``; keys and sessions for what is new (capacity allowing)."""
        for gone in [a for a in self.slots if a not in wanted]:
            self.stop(gone, "disabled or gone")
        for gone in [a for a in self._stats.keyless if a not in wanted]:
            del self._stats.keyless[gone]
        new = [a for a in sorted(wanted) if a not in self.slots]
        room = max(0, self.capacity - len(self.slots))
        for account_id in new[room:]:  # no key for an account that gets no session
            self._over_capacity(account_id)
        fits = new[:room]
        # Slots still without a key (an unwritable store): each discovery probes it again.
        keyless = [a for a in self._stats.keyless if a in self.slots and a in wanted]
        if not fits and not keyless:
            return
        report = await self._provisioner.ensure_keys([wanted[a] for a in fits + keyless])
        for account_id in fits + keyless:
            if account_id in report.failed:  # the slot retries the creation with backoff
                self._stats.keyless[account_id] = label(wanted[account_id])
            else:
                self._stats.keyless.pop(account_id, None)
        for account_id in keyless:  # its session picks the key up from the store
            if account_id in self.slots:  # (unless stopped meanwhile)
                self.slots[account_id].key.retire_pending |= account_id in report.created
        for account_id in fits:
            await self._start(wanted[account_id], fresh_key=account_id in report.created)

    def change_currencies(self, gate: GateSettings) -> None:
        """New currencies: each running session subscribes again on its live connection."""
        for slot in self.slots.values():
            if slot.session is not None:
                slot.session.change_currencies(gate)

    def restart_all(self) -> None:
        """A new ``ws_url``: every slot's session closes politely and connects again.

        Counters carry over, and so do keys pending retirement (a twin left on Gate
        is still deleted once the new session delivers); each slot's old connection
        closes before its new one opens (Gate counts both against the limit).
        """
        for task in self._tasks.values():
            task.restart()
        self._restarts += 1
        log.info("sessions_restarted", sessions=len(self.slots), reason="configuration reloaded")

    @property
    def capacity(self) -> int:
        """How many sessions the source addresses allow."""
        return self._gate().max_connections_per_ip * len(self._addresses())

    def _addresses(self) -> list[str | None]:
        return list(self._gate().source_addresses) or [None]

    def _pick_address(self) -> tuple[bool, str | None]:
        """(room left?, the least-used source address); None is the default route."""
        limit = self._gate().max_connections_per_ip
        # Counted as slots come and go: a scan of every slot per start was quadratic
        # (4.5 % of a 5,000-account start's CPU).
        per_address = self._per_address
        used = {address: per_address[address] for address in self._addresses()}
        used.update((a, n) for a, n in per_address.items() if n and a not in used)
        address, count = min(used.items(), key=lambda item: item[1])
        return count < limit, address

    async def _start(self, account: SubAccount, fresh_key: bool = False) -> None:
        if self._nursery is None:
            raise RuntimeError("the slot table is not running")
        has_room, address = self._pick_address()
        if not has_room:
            self._over_capacity(account.gate_id)
            return
        self._stats.over_capacity.discard(account.gate_id)
        # A fresh key may have a twin whose answer a crash or a reset lost: retire it.
        slot = Slot(KeyState(account, retire_pending=fresh_key), SessionStats(), address)
        self.slots[account.gate_id] = slot
        self._per_address[address] += 1
        if self._snapshots is not None:
            self._snapshots.add(account.gate_id, label(account))
        restarts = self._restarts
        task: SlotTask = await self._nursery.start(self._runner.run, slot)
        # Other tasks ran meanwhile: the slot may have been stopped (gone) or restarted.
        if self.slots.get(account.gate_id) is not slot:
            task.stop()
            return
        self._tasks[account.gate_id] = task
        if self._restarts != restarts:
            task.restart()

    def _over_capacity(self, account_id: int) -> None:
        """Count (and log once) an account that cannot have a session."""
        if account_id in self._stats.over_capacity:
            return
        self._stats.over_capacity.add(account_id)
        log.error(
            "over_capacity",
            account=account_id,
            capacity=self.capacity,
            hint="Gate allows gate.max_connections_per_ip per address: add "
            "gate.source_addresses or another shard (accounts.shard)",
        )

    def stop(self, account_id: int, reason: str) -> None:
        """Cancel the account's slot (if any) and forget it."""
        slot = self.slots.pop(account_id, None)
        if slot is not None:
            self._per_address[slot.local_address] -= 1
            log.info("session_stop", account=account_id, reason=reason)
            self._stop_task(account_id)
        if self._snapshots is not None:
            self._snapshots.remove(account_id)
        self._stats.over_capacity.discard(account_id)

    def gone(self, key: KeyState, reason: str) -> None:
        """An account is gone (Gate says so): stop and forget its slot if ``key`` is still
        its current one (a slot stopped before, and started again since, has a new one)."""
        account_id = key.account.gate_id
        log.info("session_stop", account=account_id, reason=reason)
        slot = self.slots.get(account_id)
        if slot is None or slot.key is not key:
            return
        del self.slots[account_id]
        self._per_address[slot.local_address] -= 1
        if self._snapshots is not None:
            self._snapshots.remove(account_id)
        self._stop_task(account_id)

    def _stop_task(self, account_id: int) -> None:
        task = self._tasks.pop(account_id, None)
        if task is not None:  # None: stopped while it was being started (see _start)
            task.stop()
