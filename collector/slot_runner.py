"""Runs the slots: one session loop per account, its upkeep and key rotation.

Each slot keeps one :class:`~collector.session.AccountSession` up with the
account's stored key (:mod:`collector.key_lifecycle` finds, waits for or replaces
it), restarts it with backoff after a crash, and once the session delivers
data retires replaced keys and rotates an old one (make before break). The
upkeep is a deadline in the process's shared :class:`~collector.timers.Timers`
every ``UPKEEP_INTERVAL``, not a sleeping task per slot: a task is started only
when there is a key to retire or rotate.

A slot contains its own failures: whatever one account's session, key upkeep
or rotation raises is logged as one line (``session_crashed``, the traceback
only at debug), counted by cause (``session_crashes`` in ``collector_stats``)
and retried with capped backoff; it never reaches the supervisor's nursery.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from collector.backoff import backoff_delay
from collector.config import GateSettings
from collector.gate.errors import GateError
from collector.key_lifecycle import KeyLifecycle
from collector.keys import KeyProvisioner, KeyStore, KeyStoreError, StoredKey
from collector.logging import get_logger
from collector.points.direct import Observer
from collector.points.lineproto import Bundle
from collector.session import AccountSession, AuthenticationFailed, SessionStats, SessionTiming
from collector.slot import Slot, SupervisorStats, crash_cause, label, merge_counters
from collector.snapshots import SnapshotScheduler
from collector.timers import Timers

log = get_logger(__name__)

CRASH_BACKOFF: Final = (1.0, 300.0)
# How often a slot looks after its key: retire replaced keys, rotate old ones.
UPKEEP_INTERVAL: Final = 30.0


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
        crashes = 0
        try:
            with slot.scope:
                while True:
                    try:
                        await self._run_once(slot)
                        return
                    except Exception as exc:  # an upkeep or rotation failure: this slot only
                        if slot.upkeep is not None:  # armed again by the next run
                            slot.upkeep.cancel()
                        crashes += 1
                        await self._crashed(slot, exc, crashes)
        finally:
            if slot.upkeep is not None:
                slot.upkeep.cancel()

    async def _run_once(self, slot: Slot) -> None:
        async with trio.open_nursery() as nursery:
            slot.nursery = nursery
            self._arm_upkeep(slot, self.rng.uniform(0, UPKEEP_INTERVAL))
            # The first session runs in this task (one task fewer per slot); a
            # rotation starts its successor in the nursery and cancels this one.
            scope, done = slot.drive = trio.CancelScope(), trio.Event()
            await self._drive(slot, slot.stats, scope, done)

    async def _crashed(self, slot: Slot, exc: Exception, crashes: int) -> None:
        """One line, counted by cause, then the capped backoff."""
        cause = crash_cause(exc)
        self.stats.session_crashes[cause] += 1
        delay = backoff_delay(crashes, *CRASH_BACKOFF, self.rng)
        account_id = slot.account.gate_id
        log.error(
            "session_crashed",
            account=account_id,
            cause=cause,
            error=repr(exc)[:300],
            wait_seconds=round(delay, 1),
        )
        log.debug("session_crash_traceback", account=account_id, exc_info=exc)
        await trio.sleep(delay)

    def _launch(self, slot: Slot, stats: SessionStats) -> tuple[trio.CancelScope, trio.Event]:
        assert slot.nursery is not None
        scope, done = trio.CancelScope(), trio.Event()
        slot.nursery.start_soon(self._drive, slot, stats, scope, done)
        return scope, done

    async def _drive(
        self, slot: Slot, stats: SessionStats, scope: trio.CancelScope, done: trio.Event
    ) -> None:
        """Keep one session up with the account's stored key until cancelled."""
        crashes = 0
        try:
            with scope:
                while True:
                    before = stats.points
                    try:
                        if not await self._one_session(slot, stats):
                            return
                    except Exception as exc:  # one account's failure never ends the others
                        crashes = 1 if stats.points > before else crashes + 1
                        await self._crashed(slot, exc, crashes)
        finally:
            done.set()

    async def _one_session(self, slot: Slot, stats: SessionStats) -> bool:
        """A session with the stored key until Gate refuses it; False: the slot is done."""
        stored = await self.keys.key_for(slot)
        if stored is None:
            return False
        before = stats.points
        try:
            session = slot.session = self._session(slot, stored, stats)
            await session.run()
        except AuthenticationFailed as exc:
            if stats.points > before:
                self.provisioner.mark_working(stored.key)
            return await self.keys.recover_key(slot, stored, exc)
        return True  # run() returns only when cancelled

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
        slot.refusals = 0
        stored = self.store.get(slot.account.gate_id)
        rotate = stored is not None and self.provisioner.rotation_due_in(stored) == 0
        if not (slot.retire_pending or rotate):
            self._arm_upkeep(slot, UPKEEP_INTERVAL)
            return
        assert slot.nursery is not None
        slot.upkeep = None
        slot.nursery.start_soon(self._upkeep_work, slot, rotate)

    async def _upkeep_work(self, slot: Slot, rotate: bool) -> None:
        await self.keys.retire(slot)
        if rotate:
            await self._rotate(slot)
        slot.upkeep_seen = slot.stats.points
        self._arm_upkeep(slot, UPKEEP_INTERVAL)

    async def _rotate(self, slot: Slot) -> None:
        """A successor key, its session up beside the old one, then the old one stopped."""
        account_id = slot.account.gate_id
        try:
            await self.provisioner.create(account_id)
        except (GateError, KeyStoreError) as exc:  # tried again at the next upkeep
            self.stats.key_errors += 1
            log.error("key_rotate_failed", account=account_id, error=str(exc))
            return
        assert slot.drive is not None
        old_scope, old_done = slot.drive
        stats = SessionStats()
        slot.drive = self._launch(slot, stats)
        # The new key may need Gate's activation grace; the old session keeps the data
        # flowing meanwhile (a refused new key is replaced by its own session task).
        while True:
            await trio.sleep(1.0)
            if stats.points:
                break
        old_scope.cancel()
        await old_done.wait()
        merge_counters(stats, slot.stats)
        slot.stats = stats
        slot.retire_pending = True
        self.stats.key_rotations += 1
        log.info("key_rotated", account=account_id)
        await self.keys.retire(slot)
