"""AccountSession: one authenticated unified WebSocket per sub-account.

It connects (:mod:`collector.session.websocket`), subscribes to ``unified.assets`` and
``unified.asset_detail`` through the pure machine of
:mod:`collector.gate.subscription` (an ack makes a channel active; a refusal or
no ack by the deadline retries it with backoff; a permission refusal is its own,
loud state), sends ``unified.ping`` every ``ping_interval``, and hands each
update's records to the sink through a bounded trio channel
(:mod:`collector.session.updates`). The session counts as connected only while
both channels are active: a pong proves the socket, not the subscription. When
both become active, and after a sequence gap, it asks ``on_resync`` for a REST
snapshot, because Gate pushes only on change.

One task per connection reads, one sends (subscribes, pings, resubscribes). The ping and the
no-frame watchdog are deadlines in a :class:`~collector.base.timers.Timers` heap
shared by all sessions of the process (a session on its own runs its own), not
two sleeping tasks per session.

It reconnects when no frame arrives within ``frame_timeout``, when the server
closes, and on ``upgrade``, with capped exponential backoff plus jitter that
resets once a connection has been stable. An authentication error is not
retried: :meth:`AccountSession.run` raises :class:`AuthenticationFailed` so the
owner can replace the key.

A refused handshake (Gate's per-IP limit, or any proxy in front of it) is a
session outcome, never an exception: 429 and 503 wait at least their
``Retry-After``; 401 and 403 show the account as forbidden and retry slowly (the
handshake carries no key, so a new key would not cure it); any status is counted
(``handshake_refusals``) and retried with the usual backoff.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Container
from typing import Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from collector.base.backoff import backoff_delay
from collector.base.logging import get_logger
from collector.base.timers import Timers, run_beside
from collector.config import GateSettings
from collector.gate import protocol
from collector.gate.protocol import AuthenticationFailed
from collector.gate.signing import ApiCredentials
from collector.gate.subscription import ChannelState
from collector.points.book import AccountBook
from collector.points.direct import Observer
from collector.points.lineproto import Bundle
from collector.points.normalize import Normalizer
from collector.session.keepalive import KeepAlive
from collector.session.outbox import Outbox
from collector.session.state import SessionStats, SessionTiming
from collector.session.subscriptions import SubscriptionView
from collector.session.updates import Updates
from collector.session.websocket import (
    TOO_MANY_CONNECTIONS,
    Refused,
    Target,
    open_websocket,
    queued_message,
    tls_context,
)

__all__ = [
    "AccountSession",
    "SessionStats",
    "SessionTiming",
    "tls_context",
]

log = get_logger(__name__)

CLOSE_TIMEOUT: Final = 2.0
# A handshake refused with 401/403 is a permission or address problem (the handshake
# carries no key): retried slowly, as refusals no new key can cure are.
AUTH_REFUSAL_BACKOFF: Final = (5.0, 900.0)
# Statuses that ask the client to come back later: their Retry-After is honoured.
BUSY_STATUSES: Final = frozenset({429, 503})
AUTH_STATUSES: Final = frozenset({401, 403})
# The jitter of every session's backoffs: one generator for all (a Random holds 2.5 KiB
# of state; one per session was 25 MB at 10,000 sessions).
_RNG: Final = random.Random()


class AccountSession:
    """The WebSocket session of one sub-account."""

    __slots__ = (
        "_close_reason",
        "_connect_limiter",
        "_connection",
        "_gate",
        "_keepalive",
        "_last_refusal",
        "_local_address",
        "_log",
        "_on_resync",
        "_out",
        "_own_timers",
        "_rng",
        "_subs",
        "_timers",
        "_timing",
        "_updates",
        "account",
        "stats",
    )

    def __init__(
        self,
        account: int,
        label: str,
        creds: ApiCredentials,
        gate: GateSettings,
        points: trio.MemorySendChannel[Bundle],
        *,
        timing: SessionTiming | None = None,
        local_address: str | None = None,
        other_accounts: Container[int] = frozenset(),
        connect_limiter: trio.CapacityLimiter | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_resync: Callable[[int, str], None] | None = None,
        totals: Observer | None = None,
        timers: Timers | None = None,
        book: AccountBook | None = None,
    ) -> None:
        self.account = account
        self._gate = gate
        self._timing = timing or SessionTiming()
        self._local_address = local_address
        self._connect_limiter = connect_limiter
        self._rng = rng or _RNG
        self._log = log.bind(account=account)
        self._close_reason: str | AuthenticationFailed | None = None
        self._last_refusal: int | None = None  # the status of the last refused handshake
        self._on_resync = on_resync
        normalizer = Normalizer(
            account,
            label,
            other_accounts,
            max_currencies=gate.max_currencies_per_account,
            observer=totals,
            facts=book.facts(account) if book is not None else None,
        )
        self._updates = Updates(normalizer, points, lambda: self.stats, self._log, self._resync)
        self._subs = SubscriptionView(
            self._timing, self._rng, lambda: self.stats, self._log, self._resync
        )
        self._out = Outbox(
            creds, lambda: self._gate, self._subs, self._log, self._closed_while_sending, wall_clock
        )
        # Pings and the watchdog are deadlines in a heap driven by one task (shared
        # by the supervisor's sessions; a session on its own runs its own).
        self._own_timers = timers is None
        self._timers = timers if timers is not None else Timers()
        timing = self._timing
        self._keepalive = KeepAlive(
            self._timers,
            timing.ping_interval,
            timing.frame_timeout,
            self._last_frame,
            self._ping_due_now,
            self._silent,
        )
        self._connection: trio.CancelScope | None = None
        self.stats = SessionStats()

    def change_currencies(self, gate: GateSettings) -> None:
        """SIGHUP: subscribe ``asset_detail`` again with ``gate.currencies``.

        The live connection is kept and read all along (a reconnect would lose
        the frames in flight); a later connection subscribes with them anyway.
        """
        self._gate = gate
        self._out.change_currencies()

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled; raise AuthenticationFailed on a refused key."""
        if self._own_timers:
            await run_beside(self._timers, self._run)
        else:
            await self._run()

    async def _run(self) -> None:
        failures = 0
        while True:
            started = trio.current_time()
            reason = await self._connect_and_serve()
            if isinstance(reason, AuthenticationFailed):
                self._log.error("session_auth_failed", reason=reason.reason)
                raise reason
            stable = trio.current_time() - started >= self._timing.stable_after
            failures = 1 if stable else failures + 1
            self.stats.reconnects += 1
            self._updates.normalizer.sequence.reconnected()
            if isinstance(reason, Refused):
                delay = self._refused(reason, failures)
            else:
                self._last_refusal = None
                delay = self._backoff(failures)
                self._log.warning("session_reconnect", reason=reason, wait_seconds=round(delay, 2))
            await trio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        timing = self._timing
        return backoff_delay(failures, timing.backoff_base, timing.backoff_max, self._rng)

    def _refused(self, refusal: Refused, failures: int) -> float:
        """A refused handshake: counted, shown in the account's state; how long to wait."""
        stats = self.stats
        auth = refusal.status in AUTH_STATUSES
        stats.handshake_refusals += 1
        stats.handshake_refusals_auth += auth
        delay = (
            backoff_delay(failures, *AUTH_REFUSAL_BACKOFF, self._rng)
            if auth
            else self._backoff(failures)
        )
        if refusal.status in BUSY_STATUSES and refusal.retry_after is not None:
            delay = max(delay, refusal.retry_after)
        state = ChannelState.FORBIDDEN if auth else ChannelState.REFUSED
        stats.subscription, stats.subscription_reason = state.value, str(refusal)[:200]
        fields = {"status": refusal.status, "reason": str(refusal), "wait_seconds": round(delay, 2)}
        if auth and self._last_refusal != refusal.status:  # loud once per change of status
            self._log.error(
                "session_handshake_forbidden",
                **fields,
                hint="Gate or a proxy in front of it refused the WebSocket handshake: check "
                "gate.ws_url and that this address may connect; the key is not replaced",
            )
        else:
            if refusal.status == TOO_MANY_CONNECTIONS:
                fields["hint"] = (
                    "this IP may be at Gate's connection limit: something else on this "
                    "address holds connections (another collector, a check); see "
                    "gate.max_connections_per_ip"
                )
            self._log.warning("session_handshake_refused", **fields)
        self._last_refusal = refusal.status
        return delay

    async def _connect_and_serve(self) -> str | Refused | AuthenticationFailed:
        """One connection, from connect to close; returns why it ended."""
        self._close_reason = None
        async with trio.open_nursery() as nursery:
            target = Target(
                self._gate.ws_url,
                self._gate.ca_file,
                self._local_address,
                self._timing.connect_timeout,
            )
            opened = await open_websocket(nursery, target, self._connect_limiter)
            ws = opened if isinstance(opened, WebSocketConnection) else None
            if isinstance(opened, Refused):
                return opened
            if isinstance(opened, str):
                self._close_reason = opened
            try:
                if ws is not None:
                    await self._serve(ws, nursery)
            finally:
                self._keepalive.disarm()
                self._subs.reset()
                if ws is not None:
                    await self._close(ws)
                # A handshake that timed out leaves trio-websocket's reader task behind.
                nursery.cancel_scope.cancel()
        return self._close_reason or "connection ended"

    async def _serve(self, ws: WebSocketConnection, nursery: trio.Nursery) -> None:
        self.stats.last_frame_at = trio.current_time()
        self._log.info("session_open")
        self._subs.reset()
        self._connection = nursery.cancel_scope
        self._keepalive.arm()
        nursery.start_soon(self._out.run, ws)
        await self._read(ws)

    async def _close(self, ws: WebSocketConnection) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            if self._close_reason is None:  # stopped from outside: leave politely
                for channel in protocol.CHANNELS:
                    if not await self._out.send(ws, self._out.request(channel, "unsubscribe")):
                        break
            await ws.aclose()

    # -- deadlines (called by the shared Timers task) ----------------------------

    def _ping_due_now(self) -> None:
        """The sending task sends the ping."""
        self._out.ping_due = True
        self._subs.wake.set()

    def _last_frame(self) -> float | None:
        return self.stats.last_frame_at

    def _closed_while_sending(self, reason: str) -> None:
        self._close_reason = self._close_reason or reason

    def _silent(self, reason: str) -> None:
        """No frame within ``frame_timeout``: close the connection."""
        self._close_reason = reason
        if self._connection is not None:
            self._connection.cancel()

    def _resync(self, reason: str) -> None:
        """Ask for a REST snapshot of this account: pushes come only on change."""
        self.stats.resyncs += 1
        if self._on_resync is not None:
            self._on_resync(self.account, reason)

    # -- reading -------------------------------------------------------------------

    async def _read(self, ws: WebSocketConnection) -> None:
        while self._close_reason is None:
            try:  # what the last read brought in first, without a schedule point each
                message = queued_message(ws)
                if message is None:
                    message = await ws.get_message()
            except ConnectionClosed as exc:
                self._close_reason = f"closed by the server ({exc.reason})"
                return
            stats = self.stats
            stats.frames += 1
            now = stats.last_frame_at = trio.current_time()
            event = protocol.parse(message)
            if type(event) is protocol.Update:
                await self._updates.handle(event, now)
            else:
                self._handle(event)

    def _handle(self, event: protocol.Event) -> None:
        if isinstance(event, protocol.Error):
            self._on_error(event)
        elif isinstance(event, protocol.Invalid):
            self.stats.frames_invalid += 1
            self._log.warning("frame_invalid", reason=event.reason, frame=event.excerpt)
        elif isinstance(event, protocol.Upgrade):
            self._close_reason = "the server asked to reconnect (upgrade)"
        elif isinstance(event, protocol.Ack):
            self._subs.acked(event)

    def _on_error(self, event: protocol.Error) -> None:
        if event.kind is protocol.ErrorKind.AUTH:
            self._close_reason = AuthenticationFailed(self.account, event.message)
            return
        self._subs.error(event)
