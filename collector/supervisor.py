"""The supervisor: discovery, keys and one AccountSession per enabled sub-account.

Every ``accounts.refresh_interval`` it lists the broker's sub-accounts, keeps
the enabled ones this shard owns (rendezvous hashing, :mod:`collector.placement`),
gives new ones a key and a session, and cancels the sessions of
accounts that were disabled or vanished. A session whose key Gate refuses gets
its key replaced (with per-account backoff) and starts again. One failing
account never stops the others.

Gate allows ``gate.max_connections_per_ip`` connections per source address;
sessions are spread over ``gate.source_addresses`` (or the default route) and
accounts beyond that capacity are not connected, logged once and counted, so
the operator knows to add a shard or an address.

Every account with a session is also read by REST snapshots
(:mod:`collector.snapshots`): when its subscriptions become active, after a
gap, and every ``accounts.snapshot_interval``. :meth:`Supervisor.account_states`
says per account whether it is active, refused (why), not in unified mode or
keyless (:mod:`collector.status`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Final

import trio

from collector import placement, status
from collector.backoff import backoff_delay
from collector.config import AccountsSettings, Settings
from collector.gate.broker import BrokerClient
from collector.gate.errors import GateError, NotFoundError, Refusal, refusal_kind
from collector.gate.models import SubAccount
from collector.gate.signing import ApiCredentials
from collector.health import Notifier
from collector.keys import KeyPolicy, KeyProvisioner, KeyStore, KeyStoreError, StoredKey
from collector.logging import get_logger
from collector.points import schema
from collector.points.lineproto import Point
from collector.points.totals import SessionState
from collector.session import AccountSession, AuthenticationFailed, SessionStats, SessionTiming
from collector.snapshots import SnapshotClient, SnapshotScheduler

log = get_logger(__name__)

REPLACE_BACKOFF: Final = (5.0, 900.0)
CRASH_BACKOFF: Final = (1.0, 300.0)
STATUS_INTERVAL: Final = 5.0
# Start time asked of systemd at a time (EXTEND_TIMEOUT_USEC), renewed until ready.
START_EXTENSION: Final = 90.0
# TLS + WebSocket handshakes in flight at once. Starting thousands of sessions at
# once would make every handshake slow, time out and retry: a storm, not a start.
CONNECT_CONCURRENCY: Final = 64
# How often a slot looks after its key: retire replaced keys, rotate old ones.
UPKEEP_INTERVAL: Final = 30.0
# Retries of a refused key that is still within Gate's activation grace.
GRACE_BACKOFF: Final = (5.0, 60.0)


class StartupError(Exception):
    """The collector cannot start: the broker API refused or could not be reached."""


def owns(accounts: AccountsSettings, user_id: int) -> bool:
    """Whether this instance serves ``user_id``: the one ownership test (supervisor and CLI)."""
    return placement.owns(user_id, accounts.shard_index, accounts.shard_count)


@dataclass
class _Slot:
    account: SubAccount
    scope: trio.CancelScope
    stats: SessionStats
    local_address: str | None
    replacements: int = 0
    # Refusals in a row (backoff of grace retries and of config refusals).
    refusals: int = 0
    # Keys of this instance other than the stored one may be left on Gate: delete
    # them once the stored key has delivered data.
    retire_pending: bool = False
    nursery: trio.Nursery | None = None
    # The running session task: its cancel scope and an event set when it ended.
    drive: tuple[trio.CancelScope, trio.Event] | None = None
    session: AccountSession | None = None  # the running one, for a SIGHUP


@dataclass
class SupervisorStats:
    """Counters of the supervisor itself."""

    discoveries: int = 0
    discovery_errors: int = 0
    key_replacements: int = 0
    key_rotations: int = 0
    key_errors: int = 0
    # Refusals a new key cannot cure (IP whitelist, permissions): the config is wrong.
    key_config_refusals: int = 0
    over_capacity: set[int] = field(default_factory=set)
    keyless: dict[int, str] = field(default_factory=dict)  # account -> its label


class Supervisor:
    """Owns discovery and the sessions; hands points to ``points``."""

    def __init__(
        self,
        settings: Settings,
        broker: BrokerClient,
        store: KeyStore,
        points: trio.MemorySendChannel[list[Point]],
        *,
        notifier: Notifier | None = None,
        timing: SessionTiming | None = None,
        rng: random.Random | None = None,
        session_factory: Callable[..., AccountSession] = AccountSession,
        snapshot_client: SnapshotClient | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._store = store
        self._points = points
        self._notifier = notifier or Notifier({})
        self._timing = timing
        self._rng = rng or random.Random()
        self._session_factory = session_factory
        self._wall_clock = wall_clock
        policy = KeyPolicy.from_settings(settings.accounts, settings.state.path)
        self._provisioner = KeyProvisioner(broker, store, policy, wall_clock=wall_clock)
        self._slots: dict[int, _Slot] = {}
        self._connect_limiter = trio.CapacityLimiter(CONNECT_CONCURRENCY)
        # Every sub-account id of the broker, shared by all sessions (one set, not a
        # copy each: 10,000 copies of 10,000 ids would be gigabytes).
        self._known: set[int] = set()
        self._nursery: trio.Nursery | None = None
        self.stats = SupervisorStats()
        self.ready = trio.Event()
        self._snapshots: SnapshotScheduler | None = None
        if snapshot_client is not None:
            self._snapshots = SnapshotScheduler(
                snapshot_client,
                self._creds_of,
                points,
                interval=settings.accounts.snapshot_interval,
                rate=settings.accounts.snapshot_rate,
                wall_clock=self._gate_clock,
                rng=self._rng,
            )

    # -- the main loop -------------------------------------------------------------

    async def run(self) -> None:
        """Discover, start sessions, refresh forever; StartupError if the first discovery fails."""
        try:
            accounts = await self._discover()
        except GateError as exc:
            raise StartupError(f"cannot list sub-accounts at start: {exc}") from None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._snapshots is not None:
                nursery.start_soon(self._snapshots.run)
            nursery.start_soon(self._extend_start_timeout)
            await self._reconcile(accounts)
            self._notifier.ready(self.status_line())
            self.ready.set()
            nursery.start_soon(self._heartbeat)
            while True:
                await trio.sleep(self._settings.accounts.refresh_interval)
                try:
                    accounts = await self._discover()
                except GateError as exc:
                    self.stats.discovery_errors += 1
                    log.error("discovery_failed", error=str(exc), hint="retrying at next refresh")
                    continue
                await self._reconcile(accounts)

    async def _extend_start_timeout(self) -> None:
        """Until ready: ask systemd for more start time (provisioning 10,000 keys takes
        minutes at Gate's rate limits, more than any fixed TimeoutStartSec)."""
        while not self.ready.is_set():
            self._notifier.extend_timeout(
                START_EXTENSION, f"starting: {len(self._slots)} sessions, provisioning keys"
            )
            with trio.move_on_after(START_EXTENSION / 3):
                await self.ready.wait()

    async def _heartbeat(self) -> None:
        interval = min(STATUS_INTERVAL, self._notifier.watchdog_interval or STATUS_INTERVAL)
        while True:
            self._notifier.notify("WATCHDOG=1", f"STATUS={self.status_line()}")
            await trio.sleep(interval)

    async def _discover(self) -> dict[int, SubAccount]:
        shard = self._settings.accounts
        found = [a async for a in self._broker.list_sub_accounts()]
        self.stats.discoveries += 1
        self._known.clear()
        self._known.update(a.gate_id for a in found)
        wanted = {a.gate_id: a for a in found if a.enabled and owns(shard, a.gate_id)}
        log.info(
            "discovered",
            sub_accounts=len(found),
            enabled_in_shard=len(wanted),
            shard=shard.shard,
        )
        return wanted

    async def _reconcile(self, wanted: dict[int, SubAccount]) -> None:
        for gone in [a for a in self._slots if a not in wanted]:
            self._stop(gone, "disabled or gone")
        for gone in [a for a in self.stats.keyless if a not in wanted]:
            del self.stats.keyless[gone]
        new = [a for a in sorted(wanted) if a not in self._slots]
        room = max(0, self.capacity - len(self._slots))
        for account_id in new[room:]:  # no key for an account that gets no session
            self._over_capacity(account_id)
        fits = new[:room]
        # Slots still without a key (an unwritable store): each discovery probes it again.
        keyless = [a for a in self.stats.keyless if a in self._slots and a in wanted]
        if not fits and not keyless:
            return
        report = await self._provisioner.ensure_keys([wanted[a] for a in fits + keyless])
        for account_id in fits + keyless:
            if account_id in report.failed:  # the slot retries the creation with backoff
                self.stats.keyless[account_id] = _label(wanted[account_id])
            else:
                self.stats.keyless.pop(account_id, None)
            if account_id in keyless:  # its session picks the key up from the store
                self._slots[account_id].retire_pending |= account_id in report.created
            else:
                self._start(wanted[account_id], fresh_key=account_id in report.created)

    def reload(self, settings: Settings) -> None:
        """SIGHUP: new settings; sessions follow what they use.

        New currencies: each session subscribes again on its live connection. A
        new ``ws_url``: each session closes politely (unsubscribe, close) and
        connects to it; its counters carry over.
        """
        old_gate, self._settings = self._settings.gate, settings
        if settings.gate.currencies != old_gate.currencies:
            for slot in self._slots.values():
                if slot.session is not None:
                    slot.session.change_currencies(settings.gate)
        if settings.gate.ws_url == old_gate.ws_url or self._nursery is None:
            return
        for account_id, old in list(self._slots.items()):
            old.scope.cancel()
            slot = _Slot(old.account, trio.CancelScope(), old.stats, old.local_address)
            self._slots[account_id] = slot
            self._nursery.start_soon(self._run_slot, slot)
        log.info("sessions_restarted", sessions=len(self._slots), reason="configuration reloaded")

    # -- capacity and addresses ---------------------------------------------------------

    def _addresses(self) -> list[str | None]:
        return list(self._settings.gate.source_addresses) or [None]

    def _pick_address(self) -> tuple[bool, str | None]:
        """(room left?, the least-used source address); None is the default route."""
        limit = self._settings.gate.max_connections_per_ip
        used: dict[str | None, int] = dict.fromkeys(self._addresses(), 0)
        for slot in self._slots.values():
            used[slot.local_address] = used.get(slot.local_address, 0) + 1
        address, count = min(used.items(), key=lambda item: item[1])
        return count < limit, address

    # -- sessions ------------------------------------------------------------------------

    def _start(self, account: SubAccount, fresh_key: bool = False) -> None:
        has_room, address = self._pick_address()
        if not has_room:
            self._over_capacity(account.gate_id)
            return
        assert self._nursery is not None
        self.stats.over_capacity.discard(account.gate_id)
        # A fresh key may have a twin whose answer a crash or a reset lost: retire it.
        slot = _Slot(account, trio.CancelScope(), SessionStats(), address, retire_pending=fresh_key)
        self._slots[account.gate_id] = slot
        if self._snapshots is not None:
            self._snapshots.add(account.gate_id, _label(account))
        self._nursery.start_soon(self._run_slot, slot)

    def _over_capacity(self, account_id: int) -> None:
        """Count (and log once) an account that cannot have a session."""
        if account_id in self.stats.over_capacity:
            return
        self.stats.over_capacity.add(account_id)
        log.error(
            "over_capacity",
            account=account_id,
            capacity=self.capacity,
            hint="Gate allows gate.max_connections_per_ip per address: add "
            "gate.source_addresses or another shard (accounts.shard)",
        )

    def _stop(self, account_id: int, reason: str) -> None:
        slot = self._slots.pop(account_id, None)
        if slot is not None:
            log.info("session_stop", account=account_id, reason=reason)
            slot.scope.cancel()
        if self._snapshots is not None:
            self._snapshots.remove(account_id)
        self.stats.over_capacity.discard(account_id)

    @property
    def capacity(self) -> int:
        """How many sessions the source addresses allow."""
        return self._settings.gate.max_connections_per_ip * len(self._addresses())

    def account_session_states(self) -> dict[str, SessionState]:
        """Per account of the shard (id as text): label and session state (gate_account_state)."""
        now = trio.current_time()
        states = {
            str(a): SessionState(str(a), schema.SESSION_OVER_CAPACITY)
            for a in self.stats.over_capacity
        }
        for account, slot in self._slots.items():
            connected = slot.stats.connected
            state = schema.SESSION_CONNECTED if connected else schema.SESSION_DISCONNECTED
            label = slot.account.name or slot.account.id
            states[str(account)] = SessionState(label, state, slot.stats.last_frame_age(now))
        return states

    async def _run_slot(self, slot: _Slot) -> None:
        with slot.scope:
            async with trio.open_nursery() as nursery:
                slot.nursery = nursery
                slot.drive = self._launch(slot, slot.stats)
                nursery.start_soon(self._upkeep, slot)

    def _launch(self, slot: _Slot, stats: SessionStats) -> tuple[trio.CancelScope, trio.Event]:
        assert slot.nursery is not None
        scope, done = trio.CancelScope(), trio.Event()
        slot.nursery.start_soon(self._drive, slot, stats, scope, done)
        return scope, done

    async def _drive(
        self, slot: _Slot, stats: SessionStats, scope: trio.CancelScope, done: trio.Event
    ) -> None:
        """Keep one session up with the account's stored key until cancelled."""
        account_id = slot.account.gate_id
        crashes = 0
        try:
            with scope:
                while True:
                    stored = await self._key_for(slot)
                    if stored is None:
                        return
                    before = stats.points
                    try:
                        session = slot.session = self._session(slot, stored, stats)
                        await session.run()
                    except AuthenticationFailed as exc:
                        if stats.points > before:
                            self._provisioner.mark_working(stored.key)
                        if not await self._recover_key(slot, stored, exc):
                            return
                    except (GateError, OSError, trio.BrokenResourceError) as exc:
                        crashes += 1
                        delay = backoff_delay(crashes, *CRASH_BACKOFF, self._rng)
                        log.error(
                            "session_failed",
                            account=account_id,
                            error=repr(exc),
                            wait_seconds=round(delay, 1),
                        )
                        await trio.sleep(delay)
        finally:
            done.set()

    def _session(self, slot: _Slot, stored: StoredKey, stats: SessionStats) -> AccountSession:
        session = self._session_factory(
            slot.account.gate_id,
            _label(slot.account),
            stored.credentials,
            self._settings.gate,
            self._points,
            timing=self._timing,
            local_address=slot.local_address,
            other_accounts=self._known,  # the tracker checks its own id first
            wall_clock=self._gate_clock,
            connect_limiter=self._connect_limiter,
            on_resync=self._snapshots.request if self._snapshots is not None else None,
        )
        session.stats = stats  # counters survive restarts of the session
        return session

    def _creds_of(self, account_id: int) -> ApiCredentials | None:
        stored = self._store.get(account_id)
        return stored.credentials if stored is not None else None

    def _gate_clock(self) -> float:
        """Our clock corrected by the skew the REST client measured against Gate's."""
        return self._wall_clock() + self._broker.clock_skew

    def _gone(self, slot: _Slot, reason: str) -> None:
        log.info("session_stop", account=slot.account.gate_id, reason=reason)
        if self._slots.get(slot.account.gate_id) is slot:
            del self._slots[slot.account.gate_id]
            if self._snapshots is not None:
                self._snapshots.remove(slot.account.gate_id)
        slot.scope.cancel()

    async def _key_for(self, slot: _Slot) -> StoredKey | None:
        """The stored key, creating one (retried with backoff) if there is none; None: gone."""
        account_id = slot.account.gate_id
        failures = 0
        while (stored := self._store.get(account_id)) is None:
            self.stats.keyless[account_id] = _label(slot.account)
            try:
                await self._provisioner.create(account_id)
                slot.retire_pending = True
            except NotFoundError:
                self._gone(slot, "account gone")
                return None
            except (GateError, KeyStoreError) as exc:  # an unwritable store: retried too
                failures += 1
                await self._key_error(account_id, "key_create_failed", exc, failures)
        self.stats.keyless.pop(account_id, None)
        return stored

    async def _key_error(
        self, account_id: int, event: str, exc: GateError | KeyStoreError, failures: int
    ) -> None:
        self.stats.key_errors += 1
        delay = backoff_delay(failures, *REPLACE_BACKOFF, self._rng)
        log.error(event, account=account_id, error=str(exc), wait_seconds=round(delay, 1))
        await trio.sleep(delay)

    async def _recover_key(
        self, slot: _Slot, stored: StoredKey, failure: AuthenticationFailed
    ) -> bool:
        """After a refused key: wait, or replace it; False when the account is gone.

        A clock refusal keeps the key (the REST call made here re-measures the skew);
        an IP or permission refusal is a configuration error no new key cures (loud,
        counted, retried slowly); a key within Gate's activation grace is retried
        with backoff; only then is the key dead, and a successor is created and
        stored first. The dead key is deleted once the successor delivers data.
        """
        account_id = slot.account.gate_id
        kind = refusal_kind(failure.reason)
        slot.refusals += 1
        if kind in (Refusal.IP, Refusal.PERMISSION):
            self.stats.key_config_refusals += 1
            delay = backoff_delay(slot.refusals, *REPLACE_BACKOFF, self._rng)
            setting = "key_ip_whitelist" if kind is Refusal.IP else "key_permissions"
            log.error(
                f"key_refused_{kind.value}",
                account=account_id,
                reason=failure.reason,
                wait_seconds=round(delay, 1),
                hint=f"a new key would be refused the same way: check accounts.{setting}",
            )
            await trio.sleep(delay)
            return True
        if kind is Refusal.KEY and await self._activating(stored):
            delay = backoff_delay(slot.refusals, *GRACE_BACKOFF, self._rng)
            log.warning(
                "key_not_active_yet",
                account=account_id,
                age_seconds=round(self._provisioner.age(stored), 1),
                wait_seconds=round(delay, 1),
            )
            await trio.sleep(delay)
            return True
        return await self._replace_dead_key(slot, stored, kind)

    async def _activating(self, stored: StoredKey) -> bool:
        """A refused key Gate may still be activating: young, never worked, still on Gate."""
        if not self._provisioner.in_grace(stored):
            return False
        try:  # a key deleted on Gate's site is dead, however young
            return await self._provisioner.exists_on_gate(stored)
        except GateError:
            return True  # cannot tell now: give it the grace, ask again next time

    async def _replace_dead_key(self, slot: _Slot, stored: StoredKey, kind: Refusal) -> bool:
        account_id = slot.account.gate_id
        failures = 0
        while True:
            try:
                current = await self._broker.get_sub_account(account_id)
                if not current.enabled:
                    self._gone(slot, "account disabled")
                    return False
                if kind is Refusal.CLOCK:
                    log.warning(
                        "session_clock_expired",
                        account=account_id,
                        clock_skew=round(self._broker.clock_skew, 1),
                    )
                    return True
                if self._store.get(account_id) == stored:  # not replaced meanwhile
                    log.warning("key_replace", account=account_id, key=stored.key)
                    await self._provisioner.create(account_id)
                    self.stats.key_replacements += 1
                    slot.replacements += 1
                slot.retire_pending = True
                return True
            except NotFoundError:
                self._gone(slot, "account gone")
                return False
            except (GateError, KeyStoreError) as exc:
                # The old key stays stored: the account is never left without one.
                failures += 1
                await self._key_error(account_id, "key_replace_failed", exc, failures)

    async def _upkeep(self, slot: _Slot) -> None:
        """Once the session delivers data: delete replaced keys, rotate an old key."""
        await trio.sleep(self._rng.uniform(0, UPKEEP_INTERVAL))
        seen = slot.stats.points
        while True:
            await trio.sleep(UPKEEP_INTERVAL)
            working, seen = slot.stats.points > seen, slot.stats.points
            if not working:
                continue
            slot.refusals = 0
            await self._retire(slot)
            stored = self._store.get(slot.account.gate_id)
            due = None if stored is None else self._provisioner.rotation_due_in(stored)
            if due == 0:
                await self._rotate(slot)
            seen = slot.stats.points

    async def _retire(self, slot: _Slot) -> None:
        if not slot.retire_pending:
            return
        try:
            await self._provisioner.retire(slot.account.gate_id)
            slot.retire_pending = False
        except GateError as exc:  # tried again at the next upkeep
            self.stats.key_errors += 1
            log.error("key_retire_failed", account=slot.account.gate_id, error=str(exc))

    async def _rotate(self, slot: _Slot) -> None:
        """A successor key, its session up beside the old one, then the old one stopped."""
        account_id = slot.account.gate_id
        try:
            await self._provisioner.create(account_id)
        except GateError as exc:  # tried again at the next upkeep
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
        _merge_counters(stats, slot.stats)
        slot.stats = stats
        slot.retire_pending = True
        self.stats.key_rotations += 1
        log.info("key_rotated", account=account_id)
        await self._retire(slot)

    # -- what is shown -----------------------------------------------------------------------

    def status_line(self) -> str:
        """``connected/total`` for systemd's STATUS=."""
        connected = sum(1 for s in self._slots.values() if s.stats.connected)
        sessions = self._session_count()
        over = len(self.stats.over_capacity)
        extra = f", {over} over capacity" if over else ""
        by_state = status.counts(self.account_states())
        for state in (status.REFUSED, status.FORBIDDEN, status.NOT_UNIFIED, status.KEYLESS):
            if by_state[state]:
                extra += f", {by_state[state]} {state.replace('_', ' ')}"
        return f"{connected}/{sessions} sessions connected{extra}"

    def _session_count(self) -> int:
        """Slots that have a session: a keyless account's slot only retries its key."""
        return sum(1 for account in self._slots if account not in self.stats.keyless)

    def stats_fields(self) -> dict[str, float | int]:
        """The session share of ``collector_stats``."""
        slots = [s.stats for s in self._slots.values()]
        return {
            schema.STAT_SESSIONS_TOTAL: self._session_count(),
            schema.STAT_SESSIONS_CONNECTED: sum(1 for s in slots if s.connected),
            schema.STAT_SESSIONS_OVER_CAPACITY: len(self.stats.over_capacity),
            schema.STAT_FRAMES_RECEIVED: sum(s.frames for s in slots),
            schema.STAT_FRAMES_INVALID: sum(s.frames_invalid for s in slots),
            schema.STAT_FRAMES_REJECTED: sum(s.frames_rejected for s in slots),
            schema.STAT_FIELDS_INVALID: sum(s.fields_invalid for s in slots),
            schema.STAT_GATE_ERRORS: sum(s.errors for s in slots),
            schema.STAT_RECONNECTS: sum(s.reconnects for s in slots),
            schema.STAT_GAPS: sum(s.gaps for s in slots),
            schema.STAT_KEY_REPLACEMENTS: self.stats.key_replacements,
            schema.STAT_KEY_STORE_WRITE_ERRORS: self._store.write_errors,
            **self._truth_fields(),
            schema.STAT_KEY_ROTATIONS: self.stats.key_rotations,
            schema.STAT_KEY_ERRORS: self.stats.key_errors,
            schema.STAT_KEY_CONFIG_REFUSALS: self.stats.key_config_refusals,
        }

    def _truth_fields(self) -> dict[str, float | int]:
        """Snapshot counters and how many accounts are in each state."""
        totals = self._snapshots.totals if self._snapshots is not None else None
        by_state = status.counts(self.account_states())
        return {
            schema.STAT_SNAPSHOTS: totals.taken if totals else 0,
            schema.STAT_SNAPSHOT_FAILURES: totals.failed if totals else 0,
            schema.STAT_SNAPSHOT_FIELDS_INVALID: totals.invalid_fields if totals else 0,
            schema.STAT_ACCOUNTS_ACTIVE: by_state[status.ACTIVE],
            schema.STAT_ACCOUNTS_REFUSED: by_state[status.REFUSED],
            schema.STAT_ACCOUNTS_FORBIDDEN: by_state[status.FORBIDDEN],
            schema.STAT_ACCOUNTS_NOT_UNIFIED: by_state[status.NOT_UNIFIED],
            schema.STAT_ACCOUNTS_KEYLESS: by_state[status.KEYLESS],
        }

    def account_states(self) -> list[status.AccountState]:
        """One :class:`~collector.status.AccountState` per account of this instance.

        Accounts with a session, then those left keyless; cheap enough to call on
        every stats flush or HTTP request (no I/O, no copies of big structures).
        """
        now = trio.current_time()
        keyless = self.stats.keyless  # a slot still waiting for its first key is keyless
        states = [
            self._slot_state(account, slot, now)
            for account, slot in self._slots.items()
            if account not in keyless
        ]
        states.extend(
            status.AccountState(account, label, *status.decide(keyless=True))
            for account, label in self.stats.keyless.items()
        )
        return states

    def _slot_state(self, account: int, slot: _Slot, now: float) -> status.AccountState:
        snap = self._snapshots.status(account) if self._snapshots is not None else None
        stats = slot.stats
        state, reason = status.decide(
            snapshot_state=snap.state if snap else "",
            snapshot_reason=snap.reason if snap else "",
            subscription=stats.subscription,
            subscription_reason=stats.subscription_reason,
        )
        return status.AccountState(
            account=account,
            label=_label(slot.account),
            state=state,
            reason=reason,
            connected=stats.connected,
            snapshots=snap.taken if snap else 0,
            snapshot_failures=snap.failed if snap else 0,
            last_data_age=None if stats.last_data_at is None else now - stats.last_data_at,
            last_snapshot_age=None if snap is None or snap.last_at is None else now - snap.last_at,
        )

    def session_stats(self) -> dict[int, SessionStats]:
        """Per-account session counters (for tests and the demo)."""
        return {account: slot.stats for account, slot in self._slots.items()}

    def readiness(self) -> tuple[bool, str]:
        """(ready?, one line why): discovery done and every owned account has a session."""
        if not self.ready.is_set():
            return False, "first discovery of sub-accounts not done yet"
        over = len(self.stats.over_capacity)
        if over:
            return False, (
                f"over capacity: {over} accounts of shard {self._settings.accounts.shard} have no "
                f"session (capacity {self.capacity}); add shards or gate.source_addresses"
            )
        return True, self.status_line()

    def account_rows(self) -> list[dict[str, object]]:
        """One row per owned account for ``/status``: its state and its session counters."""
        now = trio.current_time()
        rows = [
            _account_row(state, self._slots.get(state.account), now)
            for state in sorted(self.account_states(), key=lambda s: s.account)
        ]
        rows += [{"account": a, "state": "over_capacity"} for a in sorted(self.stats.over_capacity)]
        return rows


def _account_row(state: status.AccountState, slot: _Slot | None, now: float) -> dict[str, object]:
    """What ``/status`` shows of one account; add new per-account state here."""
    row: dict[str, object] = {
        "account": state.account,
        "label": state.label,
        "state": state.state,
        "reason": state.reason,
        "connected": state.connected,
        "snapshots": state.snapshots,
        "snapshot_failures": state.snapshot_failures,
        "last_data_age": _rounded(state.last_data_age),
        "last_snapshot_age": _rounded(state.last_snapshot_age),
    }
    if slot is not None:
        stats = slot.stats
        row.update(
            address=slot.local_address,
            frames=stats.frames,
            points=stats.points,
            reconnects=stats.reconnects,
            gaps=stats.gaps,
            errors=stats.errors,
            last_frame_age=_rounded(stats.last_frame_age(now)),
        )
    return row


def _rounded(age: float | None) -> float | None:
    return None if age is None else round(age, 1)


def _label(account: SubAccount) -> str:
    return account.name or account.id


def _merge_counters(into: SessionStats, old: SessionStats) -> None:
    """Add the counters of a session that was replaced to its successor's."""
    for item in fields(SessionStats):
        value = getattr(old, item.name)
        if type(value) is int:
            setattr(into, item.name, getattr(into, item.name) + value)
