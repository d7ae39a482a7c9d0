"""Runs the slots: one session loop per account, its upkeep and key rotation.

Each slot keeps one :class:`~collector.session.session.AccountSession` up with the
account's stored key (:mod:`collector.keys.lifecycle` finds, waits for or replaces
it), restarts it with backoff after a crash, and once the session delivers
data retires replaced keys and rotates an old one (make before break). The
upkeep is a deadline in the process's shared :class:`~collector.base.timers.Timers`
every ``UPKEEP_INTERVAL``, not a sleeping task per slot: a task is started only
when there is a key to retire or rotate.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from collector.base.backoff import backoff_delay
from collector.base.logging import get_logger
from collector.base.timers import Timers
from collector.config import GateSettings
from collector.gate.errors import GateError
from collector.gate.models import label
from collector.gate.protocol import AuthenticationFailed
from collector.keys import KeyProvisioner, KeyStore, StoredKey
from collector.keys.lifecycle import KeyLifecycle
from collector.points.direct import Observer
from collector.points.lineproto import Bundle
from collector.session.session import AccountSession, SessionStats, SessionTiming
from collector.supervisor.slot import Slot, SupervisorStats, merge_counters
from collector.supervisor.snapshots import SnapshotScheduler

log = get_logger(__name__)

CRASH_BACKOFF: Final = (1.0, 300.0)
# How often a slot looks after its key: retire replaced keys, rotate old ones.
UPKEEP_INTERVAL: Final = 30.0
# A rotation's successor that has not delivered after this long (twice Gate's
# documented 5 minutes of activation) is logged, again at every further such wait.
ROTATE_PATIENCE: Final = 600.0


@dataclass
class SlotRunner:
    """What every slot's tasks need, passed in by the supervisor (no back-reference)."""

    gate: Callable[[], GateSettings]  # the current settings (a SIGHUP may change them)
    store: KeyStore
    provisioner: KeyProvisioner
    keys: KeyLifecycle
    points: trio.MemorySendChannel[Bundle]
    known: set[int]  # every sub-account id of the broker (one shared set)
    stats: SupervisorStats
    snapshots: SnapshotScheduler | None
    rng: random.Random
    gate_clock: Callable[[], float]
    connect_limiter: trio.CapacityLimiter
    session_factory: Callable[..., AccountSession]
    timing: SessionTiming | None
    # The one task for every session's ping and watchdog, and every slot's upkeep.
    timers: Timers
    totals: Observer | None = None  # told every pushed value written (the shard's totals)

    async def run(self, slot: Slot) -> None:
        """The slot's session and its key upkeep, until its scope is cancelled."""
        try:
            with slot.scope:
                async with trio.open_nursery() as nursery:
                    slot.nursery = nursery
                    self._arm_upkeep(slot, self.rng.uniform(0, UPKEEP_INTERVAL))
                    # The first session runs in this task (one task fewer per slot); a
                    # rotation starts its successor in the nursery and cancels this one.
                    scope, done = slot.drive = trio.CancelScope(), trio.Event()
                    await self._drive(slot, slot.stats, scope, done)
        finally:
            if slot.upkeep is not None:
                slot.upkeep.cancel()

    def _launch(self, slot: Slot, stats: SessionStats) -> tuple[trio.CancelScope, trio.Event]:
        assert slot.nursery is not None
        scope, done = trio.CancelScope(), trio.Event()
        slot.nursery.start_soon(self._drive, slot, stats, scope, done)
        return scope, done

    async def _drive(
        self, slot: Slot, stats: SessionStats, scope: trio.CancelScope, done: trio.Event
    ) -> None:
        """Keep one session up with the account's stored key until cancelled."""
        account_id = slot.account.gate_id
        crashes = 0
        try:
            with scope:
                while True:
                    stored = await self.keys.key_for(slot.key)
                    if stored is None:
                        return
                    before = stats.points
                    try:
                        session = slot.session = self._session(slot, stored, stats)
                        await session.run()
                    except AuthenticationFailed as exc:
                        if stats.points > before:
                            self.provisioner.mark_working(stored.key)
                        if not await self.keys.recover_key(slot.key, stored, exc):
                            return
                    except (GateError, OSError, trio.BrokenResourceError) as exc:
                        crashes += 1
                        delay = backoff_delay(crashes, *CRASH_BACKOFF, self.rng)
                        log.error(
                            "session_failed",
                            account=account_id,
                            error=repr(exc),
                            wait_seconds=round(delay, 1),
                        )
                        await trio.sleep(delay)
        finally:
            done.set()

    def _session(self, slot: Slot, stored: StoredKey, stats: SessionStats) -> AccountSession:
        session = self.session_factory(
            slot.account.gate_id,
            label(slot.account),
            stored.credentials,
            self.gate(),
            self.points,
            timing=self.timing,
            local_address=slot.local_address,
            other_accounts=self.known,  # the tracker checks its own id first
            wall_clock=self.gate_clock,
            connect_limiter=self.connect_limiter,
            on_resync=self.snapshots.request if self.snapshots is not None else None,
            totals=self.totals,
            timers=self.timers,
        )
        session.stats = stats  # counters survive restarts of the session
        return session

    # -- upkeep: a deadline in the shared timers, a task only when there is work --------

    def _arm_upkeep(self, slot: Slot, delay: float) -> None:
        slot.upkeep = self.timers.call_at(
            trio.current_time() + delay, functools.partial(self._upkeep_due, slot)
        )

    def _upkeep_due(self, slot: Slot) -> None:
        """Every ``UPKEEP_INTERVAL``, once the session delivers data: retire replaced keys,
        rotate an old key (in a task of the slot's own, started only for that)."""
        points, seen = slot.stats.points, slot.upkeep_seen
        slot.upkeep_seen = points
        if seen is None or points <= seen:  # the first look only notes where it starts
            self._arm_upkeep(slot, UPKEEP_INTERVAL)
            return
        slot.key.refusals = 0
        stored = self.store.get(slot.account.gate_id)
        rotate = stored is not None and self.provisioner.rotation_due_in(stored) == 0
        if not (slot.key.retire_pending or rotate):
            self._arm_upkeep(slot, UPKEEP_INTERVAL)
            return
        assert slot.nursery is not None
        slot.upkeep = None
        slot.nursery.start_soon(self._upkeep_work, slot, rotate)

    async def _upkeep_work(self, slot: Slot, rotate: bool) -> None:
        await self.keys.retire(slot.key)
        if rotate:
            await self._rotate(slot)
        slot.upkeep_seen = slot.stats.points
        self._arm_upkeep(slot, UPKEEP_INTERVAL)

    async def _rotate(self, slot: Slot) -> None:
        """A successor key, its session up beside the old one, then the old one stopped."""
        account_id = slot.account.gate_id
        try:
            await self.provisioner.create(account_id)
        except GateError as exc:  # tried again at the next upkeep
            self.stats.key_errors += 1
            log.error("key_rotate_failed", account=account_id, error=str(exc))
            return
        assert slot.drive is not None
        old_scope, old_done = slot.drive
        delivered = trio.Event()
        stats = SessionStats(delivered=delivered)
        slot.drive = self._launch(slot, stats)
        # The new key may need Gate's activation grace; the old session keeps the data
        # flowing meanwhile (a refused new key is replaced by its own session task).
        await self._first_point(account_id, delivered)
        old_scope.cancel()
        await old_done.wait()
        merge_counters(stats, slot.stats)
        slot.stats = stats
        slot.key.retire_pending = True
        self.stats.key_rotations += 1
        log.info("key_rotated", account=account_id)
        await self.keys.retire(slot.key)

    @staticmethod
    async def _first_point(account_id: int, delivered: trio.Event) -> None:
        """Wait until the successor delivers, saying so at every ``ROTATE_PATIENCE``."""
        waited = 0.0
        while True:
            with trio.move_on_after(ROTATE_PATIENCE):
                await delivered.wait()
                return
            waited += ROTATE_PATIENCE
            log.warning(
                "key_rotation_waiting",
                account=account_id,
                waited_seconds=waited,
                hint="the new key's session has not delivered data yet; the old session "
                "keeps the data flowing meanwhile",
            )
