"""The supervisor: discovery, keys and one AccountSession per enabled sub-account.

Every ``accounts.refresh_interval`` it lists the broker's sub-accounts, keeps
the enabled ones this shard owns (rendezvous hashing, :mod:`collector.supervisor.placement`),
gives new ones a key and a session, and cancels the sessions of
accounts that were disabled or vanished. A session whose key Gate refuses gets
its key replaced (with per-account backoff) and starts again. One failing
account never stops the others.

Gate allows ``gate.max_connections_per_ip`` connections per source address;
sessions are spread over ``gate.source_addresses`` (or the default route) and
accounts beyond that capacity are not connected, logged once and counted, so
the operator knows to add a shard or an address.

Every account with a session is also read by REST snapshots
(:mod:`collector.supervisor.snapshots`): when its subscriptions become active, after a
gap, and every ``accounts.snapshot_interval``. :meth:`Supervisor.account_states`
says per account whether it is active, refused (why), not in unified mode or
keyless (:mod:`collector.supervisor.account_state`).

Rooms: per-account work runs in :mod:`collector.supervisor.runner` (the session loop,
upkeep, rotation) and :mod:`collector.keys.lifecycle` (create, grace, replace,
retire); which accounts have a slot, and on which address, is
:mod:`collector.supervisor.table`; systemd's start-time and watchdog loops are
:mod:`collector.base.heartbeat`; what is shown is assembled in
:mod:`collector.supervisor.view`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

import trio

from collector.base import heartbeat
from collector.base.logging import get_logger
from collector.base.systemd import Notifier
from collector.base.timers import Timers
from collector.config import AccountsSettings, Settings
from collector.gate.broker import BrokerClient
from collector.gate.errors import GateError
from collector.gate.models import SubAccount
from collector.gate.signing import ApiCredentials
from collector.gate.snapshot import SnapshotClient
from collector.keys import KeyPolicy, KeyProvisioner, KeyStore
from collector.keys.lifecycle import GRACE_BACKOFF, REPLACE_BACKOFF, KeyLifecycle, KeyState
from collector.points.book import AccountBook
from collector.points.lineproto import Bundle
from collector.points.totals import SessionState, TotalsTracker
from collector.points.units import Evidence, RateUnit
from collector.session.session import AccountSession, SessionStats, SessionTiming
from collector.supervisor import account_state as status
from collector.supervisor import placement
from collector.supervisor import view as supervisor_view
from collector.supervisor.connections import ConnectionBudget
from collector.supervisor.runner import CRASH_BACKOFF, UPKEEP_INTERVAL, SlotRunner
from collector.supervisor.slot import SupervisorStats
from collector.supervisor.snapshots import SnapshotScheduler
from collector.supervisor.table import SlotTable

log = get_logger(__name__)

__all__ = [
    "CRASH_BACKOFF",
    "GRACE_BACKOFF",
    "REPLACE_BACKOFF",
    "UPKEEP_INTERVAL",
    "StartupError",
    "Supervisor",
    "SupervisorStats",
    "owns",
]

# TLS + WebSocket handshakes in flight at once. Starting thousands of sessions at
# once would make every handshake slow, time out and retry: a storm, not a start.
CONNECT_CONCURRENCY: Final = 64


def announce_rate_unit(evidence: Evidence, outcome: str) -> None:
    """Log, once, what the unit of the WebSocket's rates rests on (RateUnit's announce)."""
    if outcome == "mismatch":
        log.error(
            "ws_rate_unit_mismatch",
            **evidence.as_dict(),
            hint="gate.ws_rate_unit contradicts what Gate sends: set it to the unit shown "
            'or to "auto"; pushed rates are written with the configured unit until then',
        )
    else:
        log.info("ws_rate_unit", outcome=outcome, **evidence.as_dict())


def new_book(settings: Settings) -> AccountBook:
    """The process's account book, with the configured unit of pushed rates."""
    return AccountBook(RateUnit(settings.gate.ws_rate_unit, announce_rate_unit))


class StartupError(Exception):
    """The collector cannot start: the broker API refused or could not be reached."""


def owns(accounts: AccountsSettings, user_id: int) -> bool:
    """Whether this instance serves ``user_id``: the one ownership test (supervisor and CLI)."""
    return placement.owns(user_id, accounts.shard_index, accounts.shard_count)


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
        book: AccountBook | None = None,
    ) -> None:
        self._settings = settings
        # Modes, the unit of pushed rates, push times: shared by sessions and snapshots.
        self.book = book if book is not None else new_book(settings)
        self._broker = broker
        self._store = store
        self._notifier = notifier or Notifier({})
        self._rng = rng or random.Random()
        self._wall_clock = wall_clock
        policy = KeyPolicy.from_settings(settings.accounts, settings.state.path)
        self._provisioner = KeyProvisioner(broker, store, policy, wall_clock=wall_clock)
        self._timers = Timers()  # one task keeps every session's ping and watchdog deadlines
        self._connect_limiter = trio.CapacityLimiter(CONNECT_CONCURRENCY)
        # Gate's connections per IP: every slot's session and every rotation's successor.
        self._connections = ConnectionBudget(lambda: self._settings.gate.max_connections_per_ip)
        # Every sub-account id of the broker, shared by all sessions (one set, not a
        # copy each: 10,000 copies of 10,000 ids would be gigabytes).
        self._known: set[int] = set()
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
                book=self.book,
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
            connections=self._connections,
            session_factory=session_factory,
            timing=timing or SessionTiming(ping_interval=settings.gate.ping_interval),
            totals=totals,
            timers=self._timers,
            book=self.book,
        )
        self._table = SlotTable(
            lambda: self._settings.gate,
            self._runner,
            self._provisioner,
            self.stats,
            self._snapshots,
            self._connections,
        )
        self._slots = self._table.slots  # the one dict of slots (tests read it)

    # -- the main loop -------------------------------------------------------------

    async def run(self) -> None:
        """Discover, start sessions, refresh forever; StartupError if the first discovery fails."""
        try:
            accounts = await self._discover()
        except GateError as exc:
            raise StartupError(f"cannot list sub-accounts at start: {exc}") from None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._timers.run)
            await nursery.start(self._table.run)  # the slots' tasks run in its nursery
            if self._snapshots is not None:
                nursery.start_soon(self._snapshots.run)
            nursery.start_soon(
                heartbeat.extend_start_timeout, self._notifier, self.ready, self._starting
            )
            await self._reconcile(accounts)
            # Keys a lost answer or a kill -9 left on Gate: found by name, deleted.
            nursery.start_soon(self._provisioner.sweep_orphans)
            self._notifier.ready(self.status_line())
            self.ready.set()
            nursery.start_soon(heartbeat.heartbeat, self._notifier, self.status_line)
            while True:
                await trio.sleep(self._settings.accounts.refresh_interval)
                try:
                    await self.refresh()
                except GateError as exc:
                    self.stats.discovery_errors += 1
                    self.stats.discovery_failing = True
                    log.error("discovery_failed", error=str(exc), hint="retrying at next refresh")

    async def refresh(self) -> None:
        """One discovery and what follows from it: sessions stopped and started."""
        await self._reconcile(await self._discover())

    async def _discover(self) -> dict[int, SubAccount]:
        shard = self._settings.accounts
        found = [a async for a in self._broker.list_sub_accounts()]
        self.stats.discoveries += 1
        self.stats.discovery_failing = False
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
        await self._table.reconcile(wanted)

    def reload(self, settings: Settings) -> None:
        """SIGHUP: new settings; sessions follow what they use.

        New currencies: each session subscribes again on its live connection. A
        new ``ws_url``: each session closes politely (unsubscribe, close) and
        connects to it; its counters carry over. What else it reads (the refresh
        interval, the shard) is taken from ``settings`` at its next use; which keys
        a SIGHUP may change is :mod:`collector.app.reload`'s to decide.
        """
        old_gate, self._settings = self._settings.gate, settings
        if settings.gate.currencies != old_gate.currencies:
            self._table.change_currencies(settings.gate)
        if settings.gate.ws_url != old_gate.ws_url:
            self._table.restart_all()

    def stop_session(self, account_id: int, reason: str) -> None:
        """Stop one account's session until the next refresh starts it again."""
        self._table.stop(account_id, reason)

    @property
    def settings(self) -> Settings:
        """The settings it runs with (the last :meth:`reload`'s)."""
        return self._settings

    @property
    def key_name(self) -> str:
        """The name of the keys this instance creates (and alone may delete)."""
        return self._provisioner.policy.name

    @property
    def capacity(self) -> int:
        """How many sessions the source addresses allow."""
        return self._table.capacity

    def account_session_states(self) -> dict[str, SessionState]:
        """Per account of the shard (id as text): label and session state (gate_account_state)."""
        return supervisor_view.session_states(self._slots, self.stats, trio.current_time())

    def _creds_of(self, account_id: int) -> ApiCredentials | None:
        stored = self._store.get(account_id)
        return stored.credentials if stored is not None else None

    def _gate_clock(self) -> float:
        """Our clock corrected by the skew the REST client measured against Gate's."""
        return self._wall_clock() + self._broker.clock_skew

    def _gone(self, key: KeyState, reason: str) -> None:
        self._table.gone(key, reason)

    # -- what is shown -----------------------------------------------------------------------

    def _starting(self) -> str:
        return f"starting: {len(self._slots)} sessions, provisioning keys"

    def status_line(self) -> str:
        """``connected/total`` for systemd's STATUS=."""
        return supervisor_view.status_line(self._slots, self.stats, self._by_state())

    def stats_fields(self) -> dict[str, float | int]:
        """The session share of ``collector_stats``."""
        return {
            **supervisor_view.stats_fields(
                self._slots, self.stats, self._store.write_errors, self._snapshots, self._by_state()
            ),
            **self.book.stats(),
        }

    def _by_state(self) -> dict[str, int]:
        return supervisor_view.state_counts(self._slots, self.stats, self._snapshots)

    def account_states(self) -> list[status.AccountState]:
        """One :class:`~.account_state.AccountState` per account of this instance.

        Accounts with a session, then those left keyless; cheap enough to call on
        every stats flush or HTTP request (no I/O, no copies of big structures).
        """
        now = trio.current_time()
        return supervisor_view.account_states(self._slots, self.stats, self._snapshots, now)

    def session_stats(self) -> dict[int, SessionStats]:
        """Per-account session counters (for tests and the demo)."""
        return {account: slot.stats for account, slot in self._slots.items()}

    def source_addresses(self) -> dict[int, str | None]:
        """Each session's local address (None: the default route)."""
        return {account: slot.local_address for account, slot in self._slots.items()}

    def readiness(self) -> tuple[bool, str]:
        """(ready?, one line why): discovery done and every session settled (subscribed, or
        refused for a reason of the account's own). Accounts over capacity do not make a
        shard unready: it serves what it can (they are on /metrics and in an alert)."""
        if not self.ready.is_set():
            return False, "first discovery of sub-accounts not done yet"
        connecting = self._by_state()[status.CONNECTING]
        if connecting:
            return False, (
                f"{connecting} of {supervisor_view.session_count(self._slots, self.stats)} "
                "sessions still connecting; " + self.status_line()
            )
        return True, self.status_line()

    def account_rows(self) -> list[dict[str, object]]:
        """One row per owned account for ``/status``: its state and its session counters."""
        now = trio.current_time()
        return supervisor_view.account_rows(
            self.account_states(), self._slots, self.stats, now, self.book
        )

    def gate_facts(self) -> dict[str, object]:
        """For ``/status``: the unit of pushed rates and what it rests on."""
        return {"ws_rate_unit": self.book.unit.describe()}
