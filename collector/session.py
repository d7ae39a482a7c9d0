"""AccountSession: one authenticated unified WebSocket per sub-account.

It connects (TLS with the system CAs or ``gate.ca_file``, optionally from a
given local address), subscribes to ``unified.assets`` and
``unified.asset_detail`` through the pure machine of
:mod:`collector.gate.subscription` (an ack makes a channel active; a refusal or
no ack by the deadline retries it with backoff; a permission refusal is its own,
loud state), sends ``unified.ping`` on an interval, and hands points to the sink
through a bounded trio channel (a full channel slows the session down; nothing
queues without bound). The session counts as connected only while both channels
are active: a pong proves the socket, not the subscription. When both become
active, and after a sequence gap, it asks ``on_resync`` for a REST snapshot,
because Gate pushes only on change.

It reconnects when no frame arrives within ``frame_timeout``, when the server
closes, and on ``upgrade``, with capped exponential backoff plus jitter that
resets once a connection has been stable. An authentication error is not
retried: :meth:`AccountSession.run` raises :class:`AuthenticationFailed` so the
owner can replace the key.
"""

from __future__ import annotations

import functools
import random
import ssl
import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from collector.backoff import backoff_delay
from collector.config import GateSettings
from collector.gate import protocol
from collector.gate.signing import ApiCredentials
from collector.gate.subscription import Change, ChannelState, SubscriptionError, Subscriptions
from collector.logging import get_logger
from collector.points.lineproto import Point
from collector.points.normalize import Normalizer

log = get_logger(__name__)

CLOSE_TIMEOUT: Final = 2.0
_CONNECT_ERRORS: Final = (
    OSError,
    trio.BrokenResourceError,
    trio.TooSlowError,
    ssl.SSLError,
    HandshakeError,
    ConnectionRejected,
    DisconnectionTimeout,
    ConnectionClosed,
)


class AuthenticationFailed(Exception):
    """Gate refused the account's request: replace the key, or (``clock``) fix the time."""

    def __init__(self, account: int, message: str) -> None:
        super().__init__(f"account {account}: Gate refused the key: {message}")
        self.account = account
        self.reason = message
        self.clock = protocol.is_clock_error(message)


@dataclass(frozen=True)
class SessionTiming:
    """Intervals and deadlines, in seconds."""

    ping_interval: float = 15.0
    frame_timeout: float = 45.0
    connect_timeout: float = 15.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    stable_after: float = 60.0
    ack_timeout: float = 10.0
    resubscribe_base: float = 1.0
    resubscribe_max: float = 60.0


@dataclass
class SessionStats:
    """What a session exposes about itself."""

    connected: bool = False  # the socket is up AND both channels are active
    subscription: str = ChannelState.IDLE.value  # the worst channel's state
    subscription_reason: str = ""  # why it is refused, when it is
    last_frame_at: float | None = None  # any frame, pongs too: the socket lives
    last_data_at: float | None = None  # the last update: the subscription delivers
    refusals: int = 0
    frames: int = 0
    frames_invalid: int = 0
    fields_invalid: int = 0
    frames_rejected: int = 0
    points_over_currency_cap: int = 0  # new currencies past gate.max_currencies_per_account
    errors: int = 0
    reconnects: int = 0
    gaps: int = 0
    resyncs: int = 0
    points: int = 0

    def last_frame_age(self, now: float) -> float | None:
        """Seconds since the last frame (trio clock), None before the first."""
        return None if self.last_frame_at is None else now - self.last_frame_at


@functools.lru_cache(maxsize=8)
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """One client TLS context per CA file (system CAs when None), shared by all sessions."""
    return ssl.create_default_context(cafile=ca_file)


class AccountSession:
    """The WebSocket session of one sub-account."""

    def __init__(
        self,
        account: int,
        label: str,
        creds: ApiCredentials,
        gate: GateSettings,
        points: trio.MemorySendChannel[list[Point]],
        *,
        timing: SessionTiming | None = None,
        local_address: str | None = None,
        other_accounts: Container[int] = frozenset(),
        connect_limiter: trio.CapacityLimiter | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_resync: Callable[[int, str], None] | None = None,
    ) -> None:
        self.account = account
        self._creds = creds
        self._gate = gate
        self._points = points
        self._timing = timing or SessionTiming()
        self._local_address = local_address
        self._connect_limiter = connect_limiter
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._normalizer = Normalizer(
            account, label, other_accounts, max_currencies=gate.max_currencies_per_account
        )
        self._log = log.bind(account=account)
        self._close_reason: str | AuthenticationFailed | None = None
        self._on_resync = on_resync
        self._subs = Subscriptions(
            protocol.CHANNELS,
            ack_timeout=self._timing.ack_timeout,
            retry_base=self._timing.resubscribe_base,
            retry_max=self._timing.resubscribe_max,
            rng=self._rng,
        )
        self._wake = trio.Event()
        self._currencies_changed = trio.Event()
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
            self._normalizer.sequence.reconnected()
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
            ws = await self._connect(nursery)
            try:
                if ws is not None:
                    await self._serve(ws, nursery)
            finally:
                self.stats.connected = False
                self._subs.reset()
                self._show_subscription()
                if ws is not None:
                    await self._close(ws)
                # A handshake that timed out leaves trio-websocket's reader task behind.
                nursery.cancel_scope.cancel()
        return self._close_reason or "connection ended"

    async def _connect(self, nursery: trio.Nursery) -> WebSocketConnection | None:
        url = urlsplit(self._gate.ws_url)
        secure = url.scheme == "wss"
        host = url.hostname or ""
        port = url.port or (443 if secure else 80)
        resource = url.path + (f"?{url.query}" if url.query else "")
        try:
            if self._connect_limiter is None:
                return await self._handshake(nursery, secure, host, port, resource)
            async with self._connect_limiter:  # a few handshakes at a time: no stampede
                return await self._handshake(nursery, secure, host, port, resource)
        except _CONNECT_ERRORS as exc:
            # trio wraps a TLS refusal in BrokenResourceError: name the cause (e.g. the CA).
            cause = f" caused by {exc.__cause__!r}" if exc.__cause__ is not None else ""
            self._close_reason = f"connect to {self._gate.ws_url} failed: {exc!r}{cause}"
            return None

    async def _handshake(
        self, nursery: trio.Nursery, secure: bool, host: str, port: int, resource: str
    ) -> WebSocketConnection:
        with trio.fail_after(self._timing.connect_timeout):
            stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
            stream = await trio.open_tcp_stream(host, port, local_address=self._local_address)
            if secure:
                stream = trio.SSLStream(
                    stream, tls_context(self._gate.ca_file), server_hostname=host
                )
                await stream.do_handshake()
            return await wrap_client_stream(nursery, stream, host, resource)

    async def _serve(self, ws: WebSocketConnection, nursery: trio.Nursery) -> None:
        self.stats.last_frame_at = trio.current_time()
        self._log.info("session_open")
        self._subs.reset()
        subscribed = list(self._gate.currencies)  # what the subscriber asks Gate for
        nursery.start_soon(self._subscriber, ws)
        nursery.start_soon(self._pinger, ws)
        nursery.start_soon(self._watchdog, nursery.cancel_scope)
        nursery.start_soon(self._resubscriber, ws, subscribed)
        await self._read(ws)

    async def _close(self, ws: WebSocketConnection) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            if self._close_reason is None:  # stopped from outside: leave politely
                for channel in protocol.CHANNELS:
                    if not await self._send(ws, self._request(channel, "unsubscribe")):
                        break
            await ws.aclose()

    # -- frames ------------------------------------------------------------------

    def _request(self, channel: str, event: str) -> bytes:
        payload = list(self._gate.currencies) if channel == protocol.ASSET_DETAIL else []
        now = int(self._wall_clock())
        return protocol.request(channel, event, payload, now, self._creds)

    def _subscribe(self, channel: str) -> bytes:
        return self._request(channel, "subscribe")

    async def _send(self, ws: WebSocketConnection, message: bytes) -> bool:
        try:
            await ws.send_message(message.decode())
        except ConnectionClosed as exc:
            self._close_reason = self._close_reason or f"closed while sending ({exc.reason})"
            return False
        return True

    async def _subscriber(self, ws: WebSocketConnection) -> None:
        """Send what the subscription machine says is due; sleep until its next deadline."""
        while True:
            now = trio.current_time()
            for change in self._subs.expire(now):
                self._changed(change)
            for channel in self._subs.due(now):
                # Pending before the send: the ack may be read before this task resumes.
                self._subs.sent(channel, trio.current_time())
                if not await self._send(ws, self._subscribe(channel)):
                    return
            self._show_subscription()
            self._wake = trio.Event()
            deadline = self._subs.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await self._wake.wait()

    def _changed(self, change: Change) -> None:
        """Log a channel's state change once, and resync when both became active."""
        was_connected = self.stats.connected
        self._show_subscription()
        if change.new is ChannelState.ACTIVE:
            self._log.info("subscribed", channel=change.channel)
        elif change.new is ChannelState.FORBIDDEN:
            self.stats.refusals += 1
            if change.old is not ChannelState.FORBIDDEN:
                self._log.error(
                    "subscription_forbidden",
                    channel=change.channel,
                    reason=change.reason,
                    hint="the key lacks a permission Gate needs for unified data "
                    "(or the IP is not whitelisted): fix the key's permissions; "
                    "the key is not replaced, the subscribe is retried slowly",
                )
        else:
            self.stats.refusals += 1
            if change.old is not ChannelState.REFUSED:
                self._log.warning(
                    "subscription_refused", channel=change.channel, reason=change.reason
                )
        if self.stats.connected and not was_connected:
            self._log.info("session_connected")
            self._resync("subscribed")

    def _show_subscription(self) -> None:
        state, reason = self._subs.summary()
        self.stats.subscription, self.stats.subscription_reason = state.value, reason
        self.stats.connected = self._subs.all_active

    def _resync(self, reason: str) -> None:
        """Ask for a REST snapshot of this account: pushes come only on change."""
        self.stats.resyncs += 1
        if self._on_resync is not None:
            self._on_resync(self.account, reason)

    async def _pinger(self, ws: WebSocketConnection) -> None:
        while True:
            await trio.sleep(self._timing.ping_interval)
            if not await self._send(ws, protocol.ping(int(self._wall_clock()))):
                return

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
            if not await self._send(ws, self._subscribe(protocol.ASSET_DETAIL)):
                return
            self._log.info("resubscribed", channel=protocol.ASSET_DETAIL, currencies=subscribed)

    async def _watchdog(self, scope: trio.CancelScope) -> None:
        timeout = self._timing.frame_timeout
        while True:
            deadline = (self.stats.last_frame_at or trio.current_time()) + timeout
            if trio.current_time() >= deadline:
                self._close_reason = f"no frame for {timeout:g} s"
                scope.cancel()
                return
            await trio.sleep_until(deadline)

    async def _read(self, ws: WebSocketConnection) -> None:
        while self._close_reason is None:
            try:
                message = await ws.get_message()
            except ConnectionClosed as exc:
                self._close_reason = f"closed by the server ({exc.reason})"
                return
            self.stats.frames += 1
            self.stats.last_frame_at = trio.current_time()
            await self._handle(ws, protocol.parse(message))

    async def _handle(self, ws: WebSocketConnection, event: protocol.Event) -> None:
        if isinstance(event, protocol.Update):
            await self._on_update(ws, event)
        elif isinstance(event, protocol.Error):
            self._on_error(event)
        elif isinstance(event, protocol.Invalid):
            self.stats.frames_invalid += 1
            self._log.warning("frame_invalid", reason=event.reason, frame=event.excerpt)
        elif isinstance(event, protocol.Upgrade):
            self._close_reason = "the server asked to reconnect (upgrade)"
        elif isinstance(event, protocol.Ack):
            self._on_ack(event)

    def _on_ack(self, event: protocol.Ack) -> None:
        if event.event != "subscribe":
            return
        try:
            change = self._subs.acked(event.channel)
        except SubscriptionError as exc:
            self.stats.errors += 1
            self._log.warning("ack_unexpected", error=str(exc))
            return
        if change is not None:
            self._changed(change)
            self._wake.set()

    async def _on_update(self, ws: WebSocketConnection, event: protocol.Update) -> None:
        result = self._normalizer.normalize(event)
        self.stats.fields_invalid += result.invalid_fields
        if result.over_cap:
            if not self.stats.points_over_currency_cap:  # logged once per account
                self._log.error(
                    "currency_cap_reached",
                    cap=self._normalizer.max_currencies,
                    hint="this account sends more currencies than gate.max_currencies_per_account;"
                    " new ones are dropped and counted (points_over_currency_cap)",
                )
            self.stats.points_over_currency_cap += result.over_cap
        if result.rejected is not None:
            self.stats.frames_rejected += 1
            self._log.error("frame_rejected", channel=event.channel, reason=result.rejected)
        for gap in result.gaps:
            if gap.reason == "sequence":
                self.stats.gaps += 1
            self._log.warning(
                "sequence_gap",
                channel=gap.channel,
                reason=gap.reason,
                expected=gap.expected,
                received=gap.received,
                missed=gap.missed,
            )
        self.stats.last_data_at = trio.current_time()
        if result.points:
            self.stats.points += len(result.points)
            try:  # no extra schedule point per frame while the sink keeps up
                self._points.send_nowait(result.points)
            except trio.WouldBlock:
                await self._points.send(result.points)  # back-pressure
        if result.resync:
            self._resync("gap")

    def _on_error(self, event: protocol.Error) -> None:
        if event.kind is protocol.ErrorKind.AUTH:
            self._close_reason = AuthenticationFailed(self.account, event.message)
            return
        if event.event == "subscribe" and event.channel in protocol.CHANNELS:
            permission = event.kind is protocol.ErrorKind.PERMISSION
            reason = f"code {event.code}: {event.message}"[:200]
            now = trio.current_time()
            self._changed(self._subs.refused(event.channel, now, reason, permission=permission))
            self._wake.set()
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
