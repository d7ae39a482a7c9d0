"""AccountSession: the read/send loop around one account's :class:`SessionCore`.

The core (:mod:`collector.session.core`) decides everything about the connection
and does no I/O; this loop does the I/O it asks for. Per connection
(:mod:`collector.session.websocket`) one task reads: each frame goes to the core,
an update's records go to the sink through a bounded trio channel (``send_nowait``:
no schedule point per frame while the sink keeps up; back-pressure when it does
not). One task sends what the core returned from ``due``. Its next deadline (the
ping, the no-frame watchdog, a subscription's ack or retry) is one deadline in a
:class:`~collector.base.timers.Timers` heap shared by all sessions of the process
(a session on its own runs its own), not sleeping tasks per session: when it
comes, the core is asked what is due, and a watchdog that ran out cancels the
connection.

It reconnects when the core closed the connection (no frame within
``frame_timeout``, ``upgrade``), when the server closes, with capped exponential
backoff plus jitter that resets once a connection has been stable. An
authentication error is not retried: :meth:`AccountSession.run` raises
:class:`AuthenticationFailed` so the owner can replace the key.

A refused handshake (Gate's per-IP limit, or any proxy in front of it) is a
session outcome, never an exception: 429 and 503 wait at least their
``Retry-After``; 401 and 403 show the account as forbidden and retry slowly (the
handshake carries no key, so a new key would not cure it); any status is counted
(``handshake_refusals``) and retried with the usual backoff.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Container
from typing import Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from collector.base.backoff import backoff_delay
from collector.base.logging import get_logger
from collector.base.timers import Timer, Timers, run_beside
from collector.config import GateSettings
from collector.gate.protocol import AuthenticationFailed
from collector.gate.signing import ApiCredentials
from collector.points.book import AccountBook
from collector.points.direct import Observer
from collector.points.lineproto import Bundle
from collector.session.core import CloseReason, SessionCore
from collector.session.state import SessionStats, SessionTiming
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
    "AuthenticationFailed",
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
_NEVER: Final = math.inf


class AccountSession:
    """The WebSocket session of one sub-account."""

    __slots__ = (
        "_armed_at",
        "_connect_limiter",
        "_connection",
        "_core",
        "_gate",
        "_last_refusal",
        "_local_address",
        "_log",
        "_outbox",
        "_own_timers",
        "_points",
        "_rng",
        "_timer",
        "_timers",
        "_timing",
        "_wake",
        "_wall_clock",
        "account",
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
        self._timing = timing = timing or SessionTiming()
        self._points = points
        self._local_address = local_address
        self._connect_limiter = connect_limiter
        self._wall_clock = wall_clock
        self._rng = rng or _RNG
        self._log = log.bind(account=account)
        self._last_refusal: int | None = None  # the status of the last refused handshake
        self._core = SessionCore(
            account,
            label,
            creds,
            gate.currencies,
            self._log,
            timing=timing,
            rng=self._rng,
            max_currencies=gate.max_currencies_per_account,
            other_accounts=other_accounts,
            observer=totals,
            facts=book.facts(account) if book is not None else None,
            on_resync=on_resync,
        )
        # The core's next deadline is one timer in a heap driven by one task (shared by
        # the supervisor's sessions; a session on its own runs its own).
        self._own_timers = timers is None
        self._timers = timers if timers is not None else Timers()
        self._timer: Timer | None = None
        self._armed_at = _NEVER
        self._connection: trio.CancelScope | None = None  # while a socket is open
        self._outbox: list[bytes] = []  # what the core said to send, not sent yet
        self._wake = trio.Event()  # set when the outbox has frames

    @property
    def stats(self) -> SessionStats:
        """What the session exposes about itself (its core's counters)."""
        return self._core.stats

    @stats.setter
    def stats(self, stats: SessionStats) -> None:
        """Count into an owner's ``stats`` (kept across its sessions); before :meth:`run`."""
        self._core.use_stats(stats)

    def change_currencies(self, gate: GateSettings) -> None:
        """SIGHUP: subscribe ``asset_detail`` again with ``gate.currencies``.

        The live connection is kept and read all along (a reconnect would lose
        the frames in flight); a later connection subscribes with them anyway.
        """
        self._gate = gate
        self._core.change_currencies(gate.currencies)
        if self._connection is not None:
            self._poll()

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
            self._core.retrying()
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
        auth = refusal.status in AUTH_STATUSES
        self._core.handshake_refused(auth, str(refusal))
        delay = (
            backoff_delay(failures, *AUTH_REFUSAL_BACKOFF, self._rng)
            if auth
            else self._backoff(failures)
        )
        if refusal.status in BUSY_STATUSES and refusal.retry_after is not None:
            delay = max(delay, refusal.retry_after)
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

    async def _connect_and_serve(self) -> CloseReason | Refused:
        """One connection, from connect to close; returns why it ended."""
        async with trio.open_nursery() as nursery:
            target = Target(
                self._gate.ws_url,
                self._gate.ca_file,
                self._local_address,
                self._timing.connect_timeout,
            )
            opened = await open_websocket(nursery, target, self._connect_limiter)
            if not isinstance(opened, WebSocketConnection):
                # A handshake that timed out leaves trio-websocket's reader task behind.
                nursery.cancel_scope.cancel()
                return opened
            try:
                await self._serve(opened, nursery)
            finally:
                reason = await self._hang_up(opened)
                nursery.cancel_scope.cancel()  # the sending task
        return reason  # also after the core's watchdog cancelled the connection

    async def _serve(self, ws: WebSocketConnection, nursery: trio.Nursery) -> None:
        self._log.info("session_open")
        self._connection = nursery.cancel_scope
        self._outbox.clear()
        self._core.connection_made(trio.current_time())
        nursery.start_soon(self._send, ws)
        self._poll()  # the subscribes
        await self._read(ws)

    async def _hang_up(self, ws: WebSocketConnection) -> CloseReason:
        """Close the socket (politely when stopped from outside); why it ended."""
        self._disarm()
        self._connection = None
        reason, goodbye = self._core.connection_lost(int(self._wall_clock()))
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            for frame in goodbye:
                try:
                    await ws.send_message(frame.decode())
                except ConnectionClosed:
                    break
            await ws.aclose()
        return reason

    # -- the core's deadline (called by the shared Timers task) --------------------

    def _poll(self) -> None:
        """Do what the core says is due now: queue frames, or cancel a silent connection."""
        core = self._core
        frames = core.due(trio.current_time(), int(self._wall_clock()))
        if frames:
            self._outbox += frames
            self._wake.set()
        if core.closed:
            assert self._connection is not None
            self._connection.cancel()
        else:
            self._rearm()

    def _rearm(self) -> None:
        """Arm the timer at the core's next deadline when that is earlier than the armed one
        (a later one is found when the armed one fires: no heap update per frame)."""
        when = self._core.next_deadline()
        if when < self._armed_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._timers.call_at(when, self._deadline)
            self._armed_at = when

    def _deadline(self) -> None:
        self._timer, self._armed_at = None, _NEVER
        try:
            self._poll()
        except Exception as exc:  # in the shared timers' task: a bug ends this connection only
            self._log.error("session_deadline_failed", error=repr(exc)[:300])
            self._core.close(f"deadline failed ({type(exc).__name__})")
            if self._connection is not None:
                self._connection.cancel()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_at = None, _NEVER

    # -- the two tasks of a connection ---------------------------------------------

    async def _send(self, ws: WebSocketConnection) -> None:
        """Send what the core queued, in order, until the connection closes."""
        outbox = self._outbox
        while True:
            while outbox:
                frame = outbox.pop(0)
                try:
                    await ws.send_message(frame.decode())
                except ConnectionClosed as exc:
                    self._core.close(f"closed while sending ({exc.reason})")
                    return
            self._wake = trio.Event()
            await self._wake.wait()

    async def _read(self, ws: WebSocketConnection) -> None:
        core, points = self._core, self._points
        while not core.closed:
            try:  # what the last read brought in first, without a schedule point each
                message = queued_message(ws)
                if message is None:
                    message = await ws.get_message()
            except ConnectionClosed as exc:
                core.close(f"closed by the server ({exc.reason})")
                return
            records = core.received(message, trio.current_time())
            if records:
                try:  # no extra schedule point per frame while the sink keeps up
                    points.send_nowait(records)
                except trio.WouldBlock:
                    await points.send(records)  # back-pressure
            elif records is None:  # not an update: a deadline may have moved earlier
                self._rearm()
