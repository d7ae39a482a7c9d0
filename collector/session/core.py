"""SessionCore: one account's WebSocket session as a pure object, after h11's ``Connection``.

Everything that decides what the session's connection does lives here: whether it
is open and why it closed (:meth:`SessionCore.close`, the one writer of the close
reason; the first reason wins), the subscription states (driving the machine of
:mod:`collector.gate.subscription`), what to send now, the next deadline, what a
received frame means, whether the session counts as connected, and when to ask
for a REST snapshot. No I/O, no trio and no clock inside: the loop around it
(:mod:`collector.session.session`) passes the trio time ``now`` (and, to sign a
request, the wall clock's ``wall``) and does what it is told:

- :meth:`~SessionCore.connection_made` / :meth:`~SessionCore.connection_lost`:
  a socket opened or is closing (why, and the unsubscribes that leave politely
  when it was stopped from outside); :meth:`~SessionCore.retrying` when another
  attempt follows (counted, and the next update on each channel records the
  reconnect);
- :meth:`~SessionCore.received`: one frame in; an update's records for the sink
  come back (``None`` for any other frame: it may have moved the next deadline);
- :meth:`~SessionCore.due`: the frames to send now: a subscribe for each channel
  never asked for on this connection or whose retry is due (a refusal, or no ack
  within ``ack_timeout``, backs off), the ping every ``ping_interval``, and after a
  change of currencies (:meth:`~SessionCore.change_currencies`) the unsubscribe
  of the old ones and the subscribe of the new; it closes the connection when no
  frame came within ``frame_timeout``;
- :meth:`~SessionCore.next_deadline`: when :meth:`~SessionCore.due` has work next.

The session is connected only while both channels are active: a pong proves the
socket, not the subscription. When both become active, and after a sequence gap,
``on_resync`` is asked for a REST snapshot of the account, because Gate pushes
only on change. A refused key (Gate's auth error) closes with
:class:`~collector.gate.protocol.AuthenticationFailed` as the reason.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Container, Sequence
from typing import Any, Final

from collector.gate import protocol
from collector.gate.errors import refusal_hint, refusal_kind
from collector.gate.protocol import AuthenticationFailed
from collector.gate.sequence import REASON_SEQUENCE
from collector.gate.signing import ApiCredentials
from collector.gate.subscription import Change, ChannelState, SubscriptionError, Subscriptions
from collector.points.book import AccountFacts
from collector.points.direct import Observer
from collector.points.lineproto import Bundle
from collector.points.normalize import Normalized, Normalizer
from collector.session.state import SessionStats, SessionTiming

# Unlabelled code 1/2 refusals of one channel in a row before they are logged as an error.
LOUD_AFTER: Final = 3
_NEVER: Final = math.inf
# The close reason before the first connection: nothing to read or send yet.
NOT_CONNECTED: Final = "not connected yet"

CloseReason = str | AuthenticationFailed


class SessionCore:
    """The state of one account's session, across its connections; no I/O."""

    __slots__ = (
        "_close_reason",
        "_creds",
        "_currencies",
        "_last_frame",
        "_log",
        "_normalizer",
        "_on_resync",
        "_ping_at",
        "_subs",
        "_subscribed",
        "_timing",
        "account",
        "stats",
    )

    def __init__(
        self,
        account: int,
        label: str,
        creds: ApiCredentials,
        currencies: Sequence[str],
        log: Any,  # the session's bound logger
        *,
        timing: SessionTiming,
        rng: random.Random,
        max_currencies: int,
        other_accounts: Container[int] = frozenset(),
        observer: Observer | None = None,
        facts: AccountFacts | None = None,
        on_resync: Callable[[int, str], None] | None = None,
    ) -> None:
        self.account = account
        self._creds = creds
        self._currencies = list(currencies)
        self._log = log
        self._timing = timing
        self._on_resync = on_resync
        self._normalizer = Normalizer(
            account, label, other_accounts, max_currencies, observer=observer, facts=facts
        )
        self._subs = Subscriptions(
            protocol.CHANNELS,
            ack_timeout=timing.ack_timeout,
            retry_base=timing.resubscribe_base,
            retry_max=timing.resubscribe_max,
            rng=rng,
        )
        self._close_reason: CloseReason | None = NOT_CONNECTED
        self._ping_at = self._last_frame = _NEVER
        # The currencies asset_detail was subscribed with on this connection (None: not yet).
        self._subscribed: list[str] | None = None
        self.stats = SessionStats()

    def use_stats(self, stats: SessionStats) -> None:
        """Count into ``stats`` from now on (an owner's, kept across sessions)."""
        self.stats = stats

    # -- the connection ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """The connection has a close reason: read no further, send nothing more."""
        return self._close_reason is not None

    @property
    def close_reason(self) -> CloseReason | None:
        """Why the connection closed (or is closing; :data:`NOT_CONNECTED` before the
        first); None while it is open."""
        return self._close_reason

    def close(self, reason: CloseReason) -> CloseReason:
        """The connection ends for ``reason``; a reason given earlier stays (and is returned)."""
        if self._close_reason is None:
            self._close_reason = reason
            return reason
        return self._close_reason

    def connection_made(self, now: float) -> None:
        """A socket is open: nothing subscribed, the ping and the watchdog count from ``now``."""
        self._close_reason = None
        self._subscribed = None
        self._ping_at = now + self._timing.ping_interval
        self._last_frame = self.stats.last_frame_at = now
        self._subs.reset()
        self._show()

    def connection_lost(self, wall: int) -> tuple[CloseReason, list[bytes]]:
        """The socket is closing: nothing is subscribed any more. Why it ended, and the
        unsubscribes (signed at ``wall``) that leave politely when it was stopped from
        outside (it had no reason of its own)."""
        goodbye = [] if self._close_reason is not None else self._unsubscribes(wall)
        self._subs.reset()
        self._show()
        return self.close("stopped"), goodbye

    def retrying(self) -> None:
        """Another connection follows: counted; the next update on each channel records
        the reconnect (a possible gap)."""
        self.stats.reconnects += 1
        self._normalizer.reconnected()

    def handshake_refused(self, forbidden: bool, reason: str) -> None:
        """The server answered the handshake with an HTTP status (401/403: ``forbidden``)."""
        stats = self.stats
        stats.handshake_refusals += 1
        stats.handshake_refusals_auth += forbidden
        state = ChannelState.FORBIDDEN if forbidden else ChannelState.REFUSED
        stats.subscription, stats.subscription_reason = state.value, reason[:200]

    def change_currencies(self, currencies: Sequence[str]) -> None:
        """SIGHUP: ``asset_detail`` with these currencies (see :meth:`due`); the live
        connection is kept, a later one subscribes with them anyway."""
        self._currencies = list(currencies)

    def _unsubscribes(self, wall: int) -> list[bytes]:
        subscribed = self._currencies if self._subscribed is None else self._subscribed
        return [
            protocol.unsubscribe(protocol.ASSETS, [], wall, self._creds),
            protocol.unsubscribe(protocol.ASSET_DETAIL, subscribed, wall, self._creds),
        ]

    # -- what to send, and when ------------------------------------------------------

    def due(self, now: float, wall: int) -> list[bytes]:
        """The frames to send at ``now``, each signed at ``wall`` (s); [] when closed.

        A subscribe counts as sent (pending its ack) once it is returned here.
        """
        if self._close_reason is not None:
            return []
        timeout = self._timing.frame_timeout
        if now >= self._last_frame + timeout:
            self.close(f"no frame for {timeout:g} s")
            return []
        subs, frames = self._subs, []
        for change in subs.expire(now):
            self._changed(change)
        for channel in subs.due(now):
            subs.sent(channel, now)
            frames.append(self._subscribe(channel, wall))
        if now >= self._ping_at:
            self._ping_at = now + self._timing.ping_interval
            frames.append(protocol.ping(wall))
        if self._subscribed is not None and self._subscribed != self._currencies:
            frames.append(
                protocol.unsubscribe(protocol.ASSET_DETAIL, self._subscribed, wall, self._creds)
            )
            frames.append(self._subscribe(protocol.ASSET_DETAIL, wall))
            self._log.info(
                "resubscribed", channel=protocol.ASSET_DETAIL, currencies=self._subscribed
            )
        self._show()
        return frames

    def next_deadline(self) -> float:
        """When :meth:`due` has work next (trio time); infinity while closed."""
        if self._close_reason is not None:
            return _NEVER
        deadline = min(self._ping_at, self._last_frame + self._timing.frame_timeout)
        subscription = self._subs.next_deadline()
        return deadline if subscription is None else min(deadline, subscription)

    def _subscribe(self, channel: str, wall: int) -> bytes:
        payload: list[str] = []
        if channel == protocol.ASSET_DETAIL:
            payload = self._subscribed = list(self._currencies)
        return protocol.subscribe(channel, payload, wall, self._creds)

    # -- what was received -----------------------------------------------------------

    def received(self, message: str | bytes, now: float) -> Bundle | None:
        """One frame read at ``now``: an update's records for the sink (maybe none);
        None for any other frame (the next deadline may have moved)."""
        stats = self.stats
        stats.frames += 1
        self._last_frame = stats.last_frame_at = now
        event = protocol.parse(message)
        if type(event) is protocol.Update:
            return self._update(event, now, stats)
        if isinstance(event, protocol.Ack):
            self._acked(event)
        elif isinstance(event, protocol.Error):
            self._error(event, now)
        elif isinstance(event, protocol.Invalid):
            stats.frames_invalid += 1
            self._log.warning("frame_invalid", reason=event.reason, frame=event.excerpt)
        elif isinstance(event, protocol.Upgrade):
            self.close("the server asked to reconnect (upgrade)")
        return None

    def _update(self, event: protocol.Update, now: float, stats: SessionStats) -> Bundle:
        result = self._normalizer.normalize(event)
        if result.invalid_fields or result.over_cap or result.rejected is not None or result.gaps:
            self._count(event, result, stats)
        stats.last_data_at = now
        stats.updates += 1
        records = result.records()
        if records:
            stats.points += len(records)
            if stats.delivered is not None:
                stats.delivered.set()
        if result.resync:
            self._resync("gap")
        return records

    def _count(self, event: protocol.Update, result: Normalized, stats: SessionStats) -> None:
        stats.fields_invalid += result.invalid_fields
        if result.over_cap:
            if not stats.points_over_currency_cap:  # logged once per account
                self._log.error(
                    "currency_cap_reached",
                    cap=self._normalizer.max_currencies,
                    hint="this account sends more currencies than gate.max_currencies_per_account;"
                    " new ones are dropped and counted (points_over_currency_cap)",
                )
            stats.points_over_currency_cap += result.over_cap
        if result.rejected is not None:
            stats.frames_rejected += 1
            self._log.error("frame_rejected", channel=event.channel, reason=result.rejected)
        for gap in result.gaps:
            if gap.reason == REASON_SEQUENCE:
                stats.gaps += 1
            self._log.warning(
                "sequence_gap",
                channel=gap.channel,
                reason=gap.reason,
                expected=gap.expected,
                received=gap.received,
                missed=gap.missed,
            )

    def _acked(self, event: protocol.Ack) -> None:
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

    def _error(self, event: protocol.Error, now: float) -> None:
        """Gate's error: a refused key closes; a refused subscribe is retried; else counted."""
        if event.kind is protocol.ErrorKind.AUTH:
            self.close(AuthenticationFailed(self.account, event.message))
            return
        if event.event == "subscribe" and event.channel in protocol.CHANNELS:
            permission = event.kind is protocol.ErrorKind.PERMISSION
            reason = f"code {event.code}: {event.message}"[:200]
            self._changed(self._subs.refused(event.channel, now, reason, permission=permission))
            if event.kind is protocol.ErrorKind.ARGUMENT:
                self._unexplained(event.channel, reason)
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

    def _unexplained(self, channel: str, reason: str) -> None:
        """A code 1/2 refusal without a label: retried, counted, and loud once it repeats.

        Gate answers a bad signature this way too ("auth faild", no label), so a
        refusal that keeps coming back is an error a person should see, not a
        warning lost among reconnects.
        """
        self.stats.refusals_unexplained += 1
        if self._subs[channel].failures == LOUD_AFTER:
            self._log.error(
                "subscription_refused_repeatedly",
                channel=channel,
                refusals=LOUD_AFTER,
                reason=reason,
                hint="Gate refuses the subscribe without saying why (no label); it is "
                "retried with backoff: check the key and gate.currencies",
            )

    # -- subscription states -----------------------------------------------------------

    def _changed(self, change: Change) -> None:
        """Log a channel's state change once, and resync when both became active."""
        stats = self.stats
        was_connected = stats.connected
        self._show()
        if change.new is ChannelState.ACTIVE:
            self._log.info("subscribed", channel=change.channel)
        elif change.new is ChannelState.FORBIDDEN:
            stats.refusals += 1
            if change.old is not ChannelState.FORBIDDEN:
                self._log.error(
                    "subscription_forbidden",
                    channel=change.channel,
                    reason=change.reason,
                    hint=refusal_hint(refusal_kind(change.reason))
                    + "; the key is not replaced, the subscribe is retried slowly",
                )
        else:
            stats.refusals += 1
            if change.old is not ChannelState.REFUSED:
                self._log.warning(
                    "subscription_refused", channel=change.channel, reason=change.reason
                )
        if stats.connected and not was_connected:
            self._log.info("session_connected")
            self._resync("subscribed")

    def _show(self) -> None:
        """Copy the machine's summary into the stats."""
        stats = self.stats
        state, reason = self._subs.summary()
        stats.subscription, stats.subscription_reason = state.value, reason
        stats.connected = self._subs.all_active

    def _resync(self, reason: str) -> None:
        """Ask for a REST snapshot of this account: pushes come only on change."""
        self.stats.resyncs += 1
        if self._on_resync is not None:
            self._on_resync(self.account, reason)
