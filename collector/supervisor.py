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

Rooms: per-account work runs in :mod:`collector.slot_runner` (the session loop,
upkeep, rotation) and :mod:`collector.key_lifecycle` (create, grace, replace,
retire); what is shown is assembled in :mod:`collector.supervisor_view`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

import trio

from collector import placement, status, supervisor_view
from collector.config import AccountsSettings, Settings
from collector.gate.broker import BrokerClient
from collector.gate.errors import GateError
from collector.gate.models import SubAccount
from collector.gate.signing import ApiCredentials
from collector.health import Notifier
from collector.key_lifecycle import GRACE_BACKOFF, REPLACE_BACKOFF, KeyLifecycle
from collector.keys import KeyPolicy, KeyProvisioner, KeyStore
from collector.logging import get_logger
from collector.points.lineproto import Bundle
from collector.points.totals import SessionState, TotalsTracker
from collector.session import AccountSession, SessionStats, SessionTiming
from collector.slot import Slot, SupervisorStats, label
from collector.slot_runner import CRASH_BACKOFF, UPKEEP_INTERVAL, SlotRunner
from collector.snapshots import SnapshotClient, SnapshotScheduler
from collector.timers import Timers

log = get_logger(__name__)

__all__ = [
    "CRASH_BACKOFF",
    "GRACE_BACKOFF",
    "REPLACE_BACKOFF",
    "UPKEEP_INTERVAL",
    "StartupError",
    "Supervisor",
    "SupervisorStats",
    "in_shard",
    "owns",
]

STATUS_INTERVAL: Final = 5.0
# Start time asked of systemd at a time (EXTEND_TIMEOUT_USEC), renewed until ready.
START_EXTENSION: Final = 90.0
# TLS + WebSocket handshakes in flight at once. Starting thousands of sessions at
# once would make every handshake slow, time out and retry: a storm, not a start.
CONNECT_CONCURRENCY: Final = 64


class StartupError(Exception):
    """The collector cannot start: the broker API refused or could not be reached."""


def owns(accounts: AccountsSettings, user_id: int) -> bool:
    """Whether this instance serves ``user_id``: the one ownership test (supervisor and CLI)."""
    return placement.owns(user_id, accounts.shard_index, accounts.shard_count)


# The ownership test by (id, shard index, shard count), under its former name: tests import it.
in_shard = placement.owns


class Supervisor:
    """Owns discovery and the sessions; hands points to ``points``."""

    def __init__(
        self,
        settings: Settings,
        broker: BrokerClient,
        store: KeyStore,
        points: trio.MemorySendChannel[Bundle],
        *,
        notifier: Notifier | None = None,
        timing: SessionTiming | None = None,
        rng: random.Random | None = None,
        session_factory: Callable[..., AccountSession] = AccountSession,
        snapshot_client: SnapshotClient | None = None,
        wall_clock: Callable[[], float] = time.time,
        totals: TotalsTracker | None = None,
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._store = store
        self._notifier = notifier or Notifier({})
        self._rng = rng or random.Random()
        self._wall_clock = wall_clock
        policy = KeyPolicy.from_settings(settings.accounts, settings.state.path)
        self._provisioner = KeyProvisioner(broker, store, policy, wall_clock=wall_clock)
        self._slots: dict[int, Slot] = {}
        self._timers = Timers()  # one task keeps every session's ping and watchdog deadlines
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
                observe=totals.observe if totals is not None else None,
            )
        self._keys = KeyLifecycle(
            broker, store, self._provisioner, self._rng, self.stats, gone=self._gone
        )
        self._runner = SlotRunner(
            gate=lambda: self._settings.gate,
            store=store,
            provisioner=self._provisioner,
            keys=self._keys,
            points=points,
            known=self._known,
            stats=self.stats,
            snapshots=self._snapshots,
            rng=self._rng,
            gate_clock=self._gate_clock,
            connect_limiter=self._connect_limiter,
            session_factory=session_factory,
            timing=timing or SessionTiming(ping_interval=settings.gate.ping_interval),
            totals=totals,
            timers=self._timers,
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
            nursery.start_soon(self._timers.run)
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
                self.stats.keyless[account_id] = label(wanted[account_id])
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
            slot = Slot(old.account, trio.CancelScope(), old.stats, old.local_address)
            self._slots[account_id] = slot
            self._nursery.start_soon(self._runner.run, slot)
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
        slot = Slot(account, trio.CancelScope(), SessionStats(), address, retire_pending=fresh_key)
        self._slots[account.gate_id] = slot
        if self._snapshots is not None:
            self._snapshots.add(account.gate_id, label(account))
        self._nursery.start_soon(self._runner.run, slot)

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
        return supervisor_view.session_states(self._slots, self.stats, trio.current_time())

    def _creds_of(self, account_id: int) -> ApiCredentials | None:
        stored = self._store.get(account_id)
        return stored.credentials if stored is not None else None

    def _gate_clock(self) -> float:
        """Our clock corrected by the skew the REST client measured against Gate's."""
        return self._wall_clock() + self._broker.clock_skew

    def _gone(self, slot: Slot, reason: str) -> None:
        log.info("session_stop", account=slot.account.gate_id, reason=reason)
        if self._slots.get(slot.account.gate_id) is slot:
            del self._slots[slot.account.gate_id]
            if self._snapshots is not None:
                self._snapshots.remove(slot.account.gate_id)
        slot.scope.cancel()

    # -- what is shown -----------------------------------------------------------------------

    def status_line(self) -> str:
        """``connected/total`` for systemd's STATUS=."""
        return supervisor_view.status_line(self._slots, self.stats, self._by_state())

    def stats_fields(self) -> dict[str, float | int]:
        """The session share of ``collector_stats``."""
        return supervisor_view.stats_fields(
            self._slots, self.stats, self._store.write_errors, self._snapshots, self._by_state()
        )

    def _by_state(self) -> dict[str, int]:
        return status.counts(self.account_states())

    def account_states(self) -> list[status.AccountState]:
        """One :class:`~collector.status.AccountState` per account of this instance.

        Accounts with a session, then those left keyless; cheap enough to call on
        every stats flush or HTTP request (no I/O, no copies of big structures).
        """
        now = trio.current_time()
        return supervisor_view.account_states(self._slots, self.stats, self._snapshots, now)

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
        return supervisor_view.account_rows(self.account_states(), self._slots, self.stats, now)
