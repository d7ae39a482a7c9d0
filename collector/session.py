"""AccountSession: one authenticated unified WebSocket per sub-account.

It connects (:mod:`collector.ws_connect`), subscribes to ``unified.assets`` and
``unified.asset_detail`` through the pure machine of
:mod:`collector.gate.subscription` (an ack makes a channel active; a refusal or
no ack by the deadline retries it with backoff; a permission refusal is its own,
loud state), sends ``unified.ping`` every ``ping_interval``, and hands each
update's records to the sink through a bounded trio channel
(:mod:`collector.session_updates`). The session counts as connected only while
both channels are active: a pong proves the socket, not the subscription. When
both become active, and after a sequence gap, it asks ``on_resync`` for a REST
snapshot, because Gate pushes only on change.

One task per connection reads, one sends (subscribes, pings). The ping and the
no-frame watchdog are deadlines in a :class:`~collector.timers.Timers` heap
shared by all sessions of the process (a session on its own runs its own), not
two sleeping tasks per session.

It reconnects when no frame arrives within ``frame_timeout``, when the server
closes, and on ``upgrade``, with capped exponential backoff plus jitter that
resets once a connection has been stable. An authentication error is not
retried: :meth:`AccountSession.run` raises :class:`AuthenticationFailed` so the
owner can replace the key.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Container
from typing import Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from collector.backoff import backoff_delay
from collector.config import GateSettings
from collector.gate import protocol
from collector.gate.signing import ApiCredentials
from collector.keepalive import KeepAlive
from collector.logging import get_logger
from collector.points.direct import Observer
from collector.points.lineproto import Bundle
from collector.points.normalize import Normalizer
from collector.session_state import AuthenticationFailed, SessionStats, SessionTiming
from collector.session_subs import SubscriptionView
from collector.session_updates import Updates
from collector.timers import Timers
from collector.ws_connect import Target, open_websocket, tls_context

__all__ = [
    "AccountSession",
    "AuthenticationFailed",
    "SessionStats",
    "SessionTiming",
    "tls_context",
]

log = get_logger(__name__)

CLOSE_TIMEOUT: Final = 2.0


class AccountSession:
    """The WebSocket session of one sub-account."""

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
    ) -> None:
        self.account = account
        self._creds = creds
        self._gate = gate
        self._timing = timing or SessionTiming()
        self._local_address = local_address
        self._connect_limiter = connect_limiter
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._log = log.bind(account=account)
        self._close_reason: str | AuthenticationFailed | None = None
        self._on_resync = on_resync
        normalizer = Normalizer(
            account,
            label,
            other_accounts,
            max_currencies=gate.max_currencies_per_account,
            observer=totals,
        )
        self._updates = Updates(normalizer, points, lambda: self.stats, self._log, self._resync)
        self._subs = SubscriptionView(
            self._timing, self._rng, lambda: self.stats, self._log, self._resync
        )
        self._currencies_changed = trio.Event()
        # Pings and the watchdog are deadlines in a heap driven by one task (shared
        # by the supervisor's sessions; a session on its own runs its own).
        self._own_timers = timers is None
        self._timers = timers if timers is not None else Timers()
        self._keepalive = KeepAlive(
            self._timers,
            self._timing.ping_interval,
            self._timing.frame_timeout,
            lambda: self.stats.last_frame_at,
            self._ping_due_now,
            self._silent,
        )
        self._ping_due = False
        self._connection: trio.CancelScope | None = None
        self.stats = SessionStats()

    def change_currencies(self, gate: GateSettings) -> None:
        """SIGHUP: subscribe ``asset_detail`` again with ``gate.currencies``.

        The live connection is kept and read all along (a reconnect would lose
        the frames in flight); a later connection subscribes with them anyway.
        """
        self._gate = gate
        self._currencies_changed.set()

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled; raise AuthenticationFailed on a refused key."""
        if not self._own_timers:
            await self._run()
            return
        failure: AuthenticationFailed | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._timers.run)
            try:
                await self._run()
            except AuthenticationFailed as exc:  # raised bare, not in an exception group
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

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
            delay = self._backoff(failures)
            self._log.warning("session_reconnect", reason=reason, wait_seconds=round(delay, 2))
            await trio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        timing = self._timing
        return backoff_delay(failures, timing.backoff_base, timing.backoff_max, self._rng)

    async def _connect_and_serve(self) -> str | AuthenticationFailed:
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
        self._ping_due = False
        self._connection = nursery.cancel_scope
        self._keepalive.arm()
        subscribed = list(self._gate.currencies)  # what the subscriber asks Gate for
        nursery.start_soon(self._sender, ws)
        nursery.start_soon(self._resubscriber, ws, subscribed)
        await self._read(ws)

    async def _close(self, ws: WebSocketConnection) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            if self._close_reason is None:  # stopped from outside: leave politely
                for channel in protocol.CHANNELS:
                    if not await self._send(ws, self._request(channel, "unsubscribe")):
                        break
            await ws.aclose()

    # -- deadlines (called by the shared Timers task) ----------------------------

    def _ping_due_now(self) -> None:
        """The sending task sends the ping."""
        self._ping_due = True
        self._subs.wake.set()

    def _silent(self, reason: str) -> None:
        """No frame within ``frame_timeout``: close the connection."""
        self._close_reason = reason
        if self._connection is not None:
            self._connection.cancel()

    # -- sending -------------------------------------------------------------------

    def _request(self, channel: str, event: str) -> bytes:
        payload = list(self._gate.currencies) if channel == protocol.ASSET_DETAIL else []
        now = int(self._wall_clock())
        return protocol.request(channel, event, payload, now, self._creds)

    async def _send(self, ws: WebSocketConnection, message: bytes) -> bool:
        try:
            await ws.send_message(message.decode())
        except ConnectionClosed as exc:
            self._close_reason = self._close_reason or f"closed while sending ({exc.reason})"
            return False
        return True

    async def _sender(self, ws: WebSocketConnection) -> None:
        """Send what the subscription machine says is due, and pings; sleep until the
        machine's next deadline or a wake-up (an ack, a refusal, a ping due)."""
        machine = self._subs.machine
        while True:
            self._subs.wake = trio.Event()  # before the work: a wake-up during a send is kept
            now = trio.current_time()
            self._subs.expire(now)
            for channel in machine.due(now):
                # Pending before the send: the ack may be read before this task resumes.
                machine.sent(channel, trio.current_time())
                if not await self._send(ws, self._request(channel, "subscribe")):
                    return
            if self._ping_due:
                self._ping_due = False
                if not await self._send(ws, protocol.ping(int(self._wall_clock()))):
                    return
            self._subs.show()
            deadline = machine.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await self._subs.wake.wait()

    async def _resubscriber(self, ws: WebSocketConnection, subscribed: list[str]) -> None:
        while True:
            self._currencies_changed = trio.Event()
            if list(self._gate.currencies) == subscribed:  # else: changed while subscribing
                await self._currencies_changed.wait()
            now = int(self._wall_clock())
            leave = protocol.request(
                protocol.ASSET_DETAIL, "unsubscribe", subscribed, now, self._creds
            )
            if not await self._send(ws, leave):
                return
            subscribed = list(self._gate.currencies)
            if not await self._send(ws, self._request(protocol.ASSET_DETAIL, "subscribe")):
                return
            self._log.info("resubscribed", channel=protocol.ASSET_DETAIL, currencies=subscribed)

    def _resync(self, reason: str) -> None:
        """Ask for a REST snapshot of this account: pushes come only on change."""
        self.stats.resyncs += 1
        if self._on_resync is not None:
            self._on_resync(self.account, reason)

    # -- reading -------------------------------------------------------------------

    async def _read(self, ws: WebSocketConnection) -> None:
        while self._close_reason is None:
            try:
                message = await ws.get_message()
            except ConnectionClosed as exc:
                self._close_reason = f"closed by the server ({exc.reason})"
                return
            self.stats.frames += 1
            self.stats.last_frame_at = trio.current_time()
            event = protocol.parse(message)
            if isinstance(event, protocol.Update):
                await self._updates.handle(event)
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
        if self._subs.refused(event):
            return
        self.stats.errors += 1
        self._log.warning(
            "gate_error",
            channel=event.channel,
            event_name=event.event,
            code=event.code,
            message=event.message,
            kind=event.kind.value,
        )
