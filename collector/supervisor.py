"""The supervisor: discovery, keys and one AccountSession per enabled sub-account.

Every ``accounts.refresh_interval`` it lists the broker's sub-accounts, keeps
the enabled ones of this shard (``md5(user id)`` hashmod N, as Prometheus'
hashmod does), gives new ones a key and a session, and cancels the sessions of
accounts that were disabled or vanished. A session whose key Gate refuses gets
its key replaced (with per-account backoff) and starts again. One failing
account never stops the others.

Gate allows ``gate.max_connections_per_ip`` connections per source address;
sessions are spread over ``gate.source_addresses`` (or the default route) and
accounts beyond that capacity are not connected, logged once and counted, so
the operator knows to add a shard or an address.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from collector.backoff import backoff_delay
from collector.config import Settings
from collector.gate.broker import BrokerClient
from collector.gate.errors import GateError, NotFoundError
from collector.gate.models import SubAccount
from collector.health import Notifier
from collector.keys import KeyProvisioner, KeyStore
from collector.logging import get_logger
from collector.points.lineproto import Point
from collector.session import AccountSession, AuthenticationFailed, SessionStats, SessionTiming

log = get_logger(__name__)

REPLACE_BACKOFF: Final = (5.0, 900.0)
CRASH_BACKOFF: Final = (1.0, 300.0)
STATUS_INTERVAL: Final = 5.0
# Start time asked of systemd at a time (EXTEND_TIMEOUT_USEC), renewed until ready.
START_EXTENSION: Final = 90.0
# TLS + WebSocket handshakes in flight at once. Starting thousands of sessions at
# once would make every handshake slow, time out and retry: a storm, not a start.
CONNECT_CONCURRENCY: Final = 64


class StartupError(Exception):
    """The collector cannot start: the broker API refused or could not be reached."""


def in_shard(user_id: int, index: int, count: int) -> bool:
    """Prometheus' hashmod: the last 8 bytes of md5(str(id)), big-endian, modulo N."""
    digest = hashlib.md5(str(user_id).encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % count == index


@dataclass
class _Slot:
    account: SubAccount
    scope: trio.CancelScope
    stats: SessionStats
    local_address: str | None
    replacements: int = 0
    session: AccountSession | None = None  # the running one, for a SIGHUP


@dataclass
class SupervisorStats:
    """Counters of the supervisor itself."""

    discoveries: int = 0
    discovery_errors: int = 0
    key_replacements: int = 0
    over_capacity: set[int] = field(default_factory=set)


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
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._store = store
        self._points = points
        self._notifier = notifier or Notifier({})
        self._timing = timing
        self._rng = rng or random.Random()
        self._session_factory = session_factory
        self._provisioner = KeyProvisioner(broker, store, settings.accounts.key_name)
        self._slots: dict[int, _Slot] = {}
        self._connect_limiter = trio.CapacityLimiter(CONNECT_CONCURRENCY)
        # Every sub-account id of the broker, shared by all sessions (one set, not a
        # copy each: 10,000 copies of 10,000 ids would be gigabytes).
        self._known: set[int] = set()
        self._nursery: trio.Nursery | None = None
        self.stats = SupervisorStats()
        self.ready = trio.Event()

    # -- the main loop -------------------------------------------------------------

    async def run(self) -> None:
        """Discover, start sessions, refresh forever; StartupError if the first discovery fails."""
        try:
            accounts = await self._discover()
        except GateError as exc:
            raise StartupError(f"cannot list sub-accounts at start: {exc}") from None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
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
        wanted = {
            a.gate_id: a
            for a in found
            if a.enabled and in_shard(a.gate_id, shard.shard_index, shard.shard_count)
        }
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
        new = [a for a in sorted(wanted) if a not in self._slots]
        room = max(0, self.capacity - len(self._slots))
        for account_id in new[room:]:  # no key for an account that gets no session
            self._over_capacity(account_id)
        fits = new[:room]
        if not fits:
            return
        report = await self._provisioner.ensure_keys([wanted[a] for a in fits])
        for account_id in fits:
            if account_id not in report.failed:
                self._start(wanted[account_id])

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

    def _start(self, account: SubAccount) -> None:
        has_room, address = self._pick_address()
        if not has_room:
            self._over_capacity(account.gate_id)
            return
        assert self._nursery is not None
        self.stats.over_capacity.discard(account.gate_id)
        slot = _Slot(account, trio.CancelScope(), SessionStats(), address)
        self._slots[account.gate_id] = slot
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
        self.stats.over_capacity.discard(account_id)

    @property
    def capacity(self) -> int:
        """How many sessions the source addresses allow."""
        return self._settings.gate.max_connections_per_ip * len(self._addresses())

    async def _run_slot(self, slot: _Slot) -> None:
        account_id = slot.account.gate_id
        crashes = 0
        with slot.scope:
            while True:
                try:
                    slot.session = self._session(slot)
                    await slot.session.run()
                except AuthenticationFailed as exc:
                    if not await self._recover_key(slot, exc):
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

    def _session(self, slot: _Slot) -> AccountSession:
        stored = self._store.get(slot.account.gate_id)
        if stored is None:
            raise NotFoundError(404, "NO_KEY", f"no stored key for {slot.account.gate_id}")
        session = self._session_factory(
            slot.account.gate_id,
            slot.account.name or slot.account.id,
            stored.credentials,
            self._settings.gate,
            self._points,
            timing=self._timing,
            local_address=slot.local_address,
            other_accounts=self._known,  # the tracker checks its own id first
            wall_clock=self._gate_clock,
            connect_limiter=self._connect_limiter,
        )
        session.stats = slot.stats  # counters survive restarts of the session
        return session

    def _gate_clock(self) -> float:
        """Our clock corrected by the skew the REST client measured against Gate's."""
        return time.time() + self._broker.clock_skew

    async def _recover_key(self, slot: _Slot, failure: AuthenticationFailed) -> bool:
        """After a refused key: replace it, unless the account is gone or the clock was off.

        The REST call made here also re-measures the clock skew, so a
        ``REQUEST_EXPIRED`` is cured by restarting the session with the same key.
        """
        account_id = slot.account.gate_id
        slot.replacements += 1
        delay = (
            0.0
            if slot.replacements == 1
            else backoff_delay(slot.replacements - 1, *REPLACE_BACKOFF, self._rng)
        )
        await trio.sleep(delay)
        try:
            current = await self._broker.get_sub_account(account_id)
            if not current.enabled:
                log.info("session_stop", account=account_id, reason="account disabled")
                self._slots.pop(account_id, None)
                return False
            if failure.clock:
                log.warning(
                    "session_clock_expired",
                    account=account_id,
                    clock_skew=round(self._broker.clock_skew, 1),
                )
                return True
            await self._provisioner.replace(account_id, reason=failure.reason)
            self.stats.key_replacements += 1
        except NotFoundError:
            log.info("session_stop", account=account_id, reason="account gone")
            self._slots.pop(account_id, None)
            return False
        except GateError as exc:
            log.error("key_replace_failed", account=account_id, error=str(exc))
        return True

    # -- what is shown -----------------------------------------------------------------------

    def status_line(self) -> str:
        """``connected/total`` for systemd's STATUS=."""
        connected = sum(1 for s in self._slots.values() if s.stats.connected)
        over = len(self.stats.over_capacity)
        extra = f", {over} over capacity" if over else ""
        return f"{connected}/{len(self._slots)} sessions connected{extra}"

    def stats_fields(self) -> dict[str, float | int]:
        """The session share of ``collector_stats``."""
        slots = [s.stats for s in self._slots.values()]
        return {
            "sessions_total": len(slots),
            "sessions_connected": sum(1 for s in slots if s.connected),
            "sessions_over_capacity": len(self.stats.over_capacity),
            "frames_received": sum(s.frames for s in slots),
            "frames_invalid": sum(s.frames_invalid for s in slots),
            "frames_rejected": sum(s.frames_rejected for s in slots),
            "fields_invalid": sum(s.fields_invalid for s in slots),
            "gate_errors": sum(s.errors for s in slots),
            "reconnects": sum(s.reconnects for s in slots),
            "gaps": sum(s.gaps for s in slots),
            "key_replacements": self.stats.key_replacements,
        }

    def session_stats(self) -> dict[int, SessionStats]:
        """Per-account session counters (for tests and the demo)."""
        return {account: slot.stats for account, slot in self._slots.items()}
