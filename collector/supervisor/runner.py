"""Runs the slots: one session loop per account, its upkeep and key rotation.

Each slot keeps one :class:`~collector.session.session.AccountSession` up with the
account's stored key (:mod:`collector.keys.lifecycle` finds, waits for or replaces
it), restarts it with backoff after a crash, and once the session delivers
data retires replaced keys and rotates an old one (make before break). The
upkeep is a deadline in the process's shared :class:`~collector.base.timers.Timers`
every ``UPKEEP_INTERVAL``, not a sleeping task per slot: a task is started only
when there is a key to retire or rotate.

Tasks, owned top-down: the table starts a slot's task with ``nursery.start`` and
holds the :class:`SlotTask` it reports (stop, restart). The slot's task runs rounds;
a round's nursery holds everything of one round: the first session loop runs in the
slot's task itself, a rotation's successor is started in the round's nursery and
reports its :class:`SessionTask` the same way, and the upkeep's work (only when
there is some) is a task of that nursery too. A restart ends the round (its sessions
close their connections first) and runs a new one.

A slot contains its own failures: whatever one account's session, key upkeep
or rotation raises is logged as one line (``session_crashed``, the traceback
only at debug), counted by cause (``session_crashes`` in ``collector_stats``)
and retried with capped backoff; it never reaches the supervisor's nursery.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from collector.base.backoff import backoff_delay
from collector.base.logging import get_logger
from collector.base.timers import Timer, Timers
from collector.config import GateSettings
from collector.gate.errors import GateError
from collector.gate.models import label
from collector.gate.protocol import AuthenticationFailed
from collector.keys import KeyProvisioner, KeyStore, KeyStoreError, StoredKey
from collector.keys.lifecycle import GRACE_BACKOFF, KeyLifecycle
from collector.points.book import AccountBook
from collector.points.direct import Observer
from collector.points.lineproto import Bundle
from collector.session.session import AccountSession, SessionStats, SessionTiming
from collector.supervisor.connections import ConnectionBudget
from collector.supervisor.slot import Slot, SupervisorStats, crash_cause, merge_counters
from collector.supervisor.snapshots import SnapshotScheduler

log = get_logger(__name__)

CRASH_BACKOFF: Final = (1.0, 300.0)
# How often a slot looks after its key: retire replaced keys, rotate old ones.
UPKEEP_INTERVAL: Final = 30.0
# How long a rotation waits for a stopped session to close its connection (a
# polite close takes at most session.CLOSE_TIMEOUT; this is the backstop).
OLD_SESSION_CLOSE: Final = 10.0


class SlotTask:
    """A running slot, as its task reports itself (``task_status.started``) to the table
    that started it: the table stops it, or restarts its session, with this."""

    __slots__ = ("_round", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()  # the slot's task, whole
        self._round = trio.CancelScope()  # its current round: sessions, upkeep, rotation

    def stop(self) -> None:
        """End the slot: its sessions close politely, its upkeep is disarmed."""
        self.scope.cancel()

    def restart(self) -> None:
        """Close the slot's sessions politely and connect again (a new round, counters kept)."""
        self._round.cancel()

    def next_round(self) -> trio.CancelScope:
        """The scope of a new round (for the slot's own task)."""
        self._round = trio.CancelScope()
        return self._round


@dataclass(slots=True)
class SessionTask:
    """A session loop's task (one runs a slot's session): its scope, its end, and the
    session it runs now (a new one after each reconnect)."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ended: trio.Event = field(default_factory=trio.Event)  # set once its session closed
    session: AccountSession | None = None


@dataclass(slots=True)
class _Round:
    """What one round of a slot's tasks shares (the nursery they run in is passed along):
    the session task serving the slot now, and the next upkeep deadline."""

    drive: SessionTask
    upkeep: Timer | None = None


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
    connections: ConnectionBudget  # Gate's per-IP limit: a rotation's successor asks it
    session_factory: Callable[..., AccountSession]
    timing: SessionTiming | None
    # The one task for every session's ping and watchdog, and every slot's upkeep.
    timers: Timers
    totals: Observer | None = None  # told every pushed value written (the shard's totals)
    book: AccountBook | None = None  # every account's mode, push times, the rates' unit

    async def run(
        self, slot: Slot, *, task_status: trio.TaskStatus[SlotTask] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The slot's session and its key upkeep, until stopped (or its account is gone).

        Reports a :class:`SlotTask` through ``task_status`` at once: whoever started
        this task (the table) stops it or restarts its session with that. A failure
        of the upkeep or a rotation stays in this slot: one line, counted, a new
        round after a capped backoff. A restart ends the round and runs a new one:
        the old sessions close their connections before the new one opens (Gate
        counts both against its per-IP limit).
        """
        task = SlotTask()
        task_status.started(task)
        crashes = 0
        with task.scope:
            while True:
                with task.next_round():
                    try:
                        await self._round(slot)
                        return
                    except Exception as exc:  # an upkeep or rotation failure: this slot only
                        crashes += 1
                        await self._crashed(slot, exc, crashes)

    async def _round(self, slot: Slot) -> None:
        """One round of the slot's tasks: its session, upkeep and rotations, in one nursery.

        The first session runs in this task (one task fewer per slot); a rotation
        starts its successor in the nursery and stops this one.
        """
        drive = SessionTask()
        round_ = _Round(drive)
        try:
            async with trio.open_nursery() as nursery:
                self._arm_upkeep(slot, round_, nursery, self.rng.uniform(0, UPKEEP_INTERVAL))
                await self._drive(slot, slot.stats, drive)
        finally:
            if round_.upkeep is not None:  # armed again by the next round
                round_.upkeep.cancel()

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

    async def _session_task(
        self,
        slot: Slot,
        stats: SessionStats,
        *,
        task_status: trio.TaskStatus[SessionTask] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """A session loop in a task of its own (a rotation's successor), reported at once."""
        drive = SessionTask()
        task_status.started(drive)
        await self._drive(slot, stats, drive)

    async def _drive(self, slot: Slot, stats: SessionStats, drive: SessionTask) -> None:
        """Keep one session up with the account's stored key until cancelled."""
        crashes = 0
        try:
            with drive.scope:
                while True:
                    before = stats.points
                    try:
                        if not await self._one_session(slot, stats, drive):
                            return
                    except Exception as exc:  # one account's failure never ends the others
                        crashes = 1 if stats.points > before else crashes + 1
                        await self._crashed(slot, exc, crashes)
        finally:
            drive.ended.set()

    async def _one_session(self, slot: Slot, stats: SessionStats, drive: SessionTask) -> bool:
        """A session with the stored key until Gate refuses it; False: the slot is done."""
        stored = await self.keys.key_for(slot.key)
        if stored is None:
            return False
        before = stats.points
        try:
            session = drive.session = self._session(slot, stored, stats)
            if stats is slot.stats:  # the slot's own loop (a successor counts apart until made)
                slot.session = session
            await session.run()
        except AuthenticationFailed as exc:
            if stats.points > before:
                self.provisioner.mark_working(stored.key)
            return await self.keys.recover_key(slot.key, stored, exc)
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
            book=self.book,
        )
        session.stats = stats  # counters survive restarts of the session
        return session

    # -- upkeep: a deadline in the shared timers, a task only when there is work --------

    def _arm_upkeep(self, slot: Slot, round_: _Round, nursery: trio.Nursery, delay: float) -> None:
        round_.upkeep = self.timers.call_at(
            trio.current_time() + delay, functools.partial(self._upkeep_due, slot, round_, nursery)
        )

    def _upkeep_due(self, slot: Slot, round_: _Round, nursery: trio.Nursery) -> None:
        """Every ``UPKEEP_INTERVAL``, once the session delivers data: retire replaced keys,
        rotate an old key (in a task of the round's nursery, started only for that)."""
        points, seen = slot.stats.points, slot.upkeep_seen
        slot.upkeep_seen = points
        if seen is None or points <= seen:  # the first look only notes where it starts
            self._arm_upkeep(slot, round_, nursery, UPKEEP_INTERVAL)
            return
        slot.key.refusals = 0
        stored = self.store.get(slot.account.gate_id)
        rotate = stored is not None and self.provisioner.rotation_due_in(stored) == 0
        if not (slot.key.retire_pending or rotate):
            self._arm_upkeep(slot, round_, nursery, UPKEEP_INTERVAL)
            return
        round_.upkeep = None  # armed again once the work is done: one rotation at a time
        try:
            nursery.start_soon(self._upkeep_work, slot, round_, nursery, rotate)
        except RuntimeError:  # the round is ending (its nursery takes no new task)
            return

    async def _upkeep_work(
        self, slot: Slot, round_: _Round, nursery: trio.Nursery, rotate: bool
    ) -> None:
        await self.keys.retire(slot.key)
        if rotate:
            await self._rotate(slot, round_, nursery)
        slot.upkeep_seen = slot.stats.points
        self._arm_upkeep(slot, round_, nursery, UPKEEP_INTERVAL)

    async def _rotate(self, slot: Slot, round_: _Round, nursery: trio.Nursery) -> None:
        """A successor key, and its session in place of the old one.

        Make before break when Gate's per-IP limit leaves an extra connection on
        the slot's address; else, or when the successor delivers nothing within
        :meth:`_successor_wait` (Gate refused its connection: something else on
        the address holds connections too), break before make
        (:meth:`_break_before_make`): a successor that cannot connect must not
        wait forever while the old key runs out its 90 days.
        """
        account_id = slot.account.gate_id
        try:
            await self.provisioner.create(account_id)
        except (GateError, KeyStoreError) as exc:  # tried again at the next upkeep
            self.stats.key_errors += 1
            log.error("key_rotate_failed", account=account_id, error=str(exc))
            return
        address = slot.local_address
        if self.connections.try_extra(address):
            try:
                made = await self._make_before_break(slot, round_, nursery)
            finally:
                self.connections.release_extra(address)  # the old session's is the slot's
            if made:
                self.stats.key_rotations += 1
                log.info("key_rotated", account=account_id)
                await self.keys.retire(slot.key)
                return
            log.warning(
                "key_rotate_successor_stalled",
                account=account_id,
                wait_seconds=self._successor_wait(),
                hint="the new key's session delivered nothing beside the old one "
                "(Gate refused its connection or its key): rotating break before make",
            )
        await self._break_before_make(slot, round_, nursery)

    def _successor_wait(self) -> float:
        """How long a successor beside the old session may take to deliver data."""
        return self.provisioner.policy.activation_grace + 2 * UPKEEP_INTERVAL

    async def _make_before_break(self, slot: Slot, round_: _Round, nursery: trio.Nursery) -> bool:
        """The successor's session up beside the old one, then the old one stopped.

        False, the old session untouched and the successor stopped, when the
        successor delivered nothing within :meth:`_successor_wait`.
        """
        delivered = trio.Event()
        stats = SessionStats(delivered=delivered)
        successor = await nursery.start(self._session_task, slot, stats)
        # The new key may need Gate's activation grace; the old session keeps the data
        # flowing meanwhile (a refused new key is replaced by its own session task).
        with trio.move_on_after(self._successor_wait()):
            await delivered.wait()  # the successor's first point
        # Decided once: a point arriving while the successor is being stopped must not
        # turn a stopped successor into the slot's session.
        made = delivered.is_set()
        await _stop(round_.drive if made else successor)
        if not made:  # slot.session is still the old loop's (only its own loop sets it)
            merge_counters(slot.stats, stats)  # the successor's refusals, reconnects
            return False
        round_.drive = successor
        merge_counters(stats, slot.stats)
        slot.stats, slot.session = stats, successor.session
        slot.key.retire_pending = True
        return True

    async def _break_before_make(self, slot: Slot, round_: _Round, nursery: trio.Nursery) -> None:
        """No spare connection: stop the old session, start the successor's in its place.

        First a REST snapshot with the new key, retried while Gate may still be
        activating it (the old session keeps the data flowing meanwhile): its points
        bridge the moment, and the break waits until the new key works, so Gate's
        activation delay is no gap. Then the old session closes before the new one
        connects, so the address never holds more than Gate allows. The old key
        stays on Gate until the new session has delivered data (the upkeep retires
        it then).
        """
        account_id = slot.account.gate_id
        await self._bridge(slot)
        # Counted once bridged, as the snapshot was: a stop that takes its time
        # leaves no bridged rotation uncounted.
        slot.key.retire_pending = True
        self.stats.key_rotations += 1
        self.stats.key_rotations_break_before_make += 1
        log.warning(
            "key_rotated_break_before_make",
            account=account_id,
            address=slot.local_address or "default",
            limit=self.gate().max_connections_per_ip,
            hint="no spare connection under gate.max_connections_per_ip on this address: "
            "the old session closed before the new one opened; a REST snapshot bridged it",
        )
        await _stop(round_.drive)
        round_.drive = await nursery.start(self._session_task, slot, slot.stats)

    async def _bridge(self, slot: Slot) -> None:
        """A snapshot with the new key, retried with backoff while the key is in its grace."""
        stored = self.store.get(slot.account.gate_id)
        failures = 0
        while self.snapshots is not None and stored is not None:
            if await self.snapshots.bridge(slot.account.gate_id):
                return
            if not self.provisioner.in_grace(stored):
                return  # not activation: the new session's own refusal handling decides
            failures += 1
            await trio.sleep(backoff_delay(failures, *GRACE_BACKOFF, self.rng))


async def _stop(drive: SessionTask) -> None:
    """Stop a session loop and wait until its session has closed its connection."""
    drive.scope.cancel()
    with trio.move_on_after(OLD_SESSION_CLOSE):
        await drive.ended.wait()
