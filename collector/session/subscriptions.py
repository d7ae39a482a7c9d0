"""A session's view of its subscriptions: Gate's acks and errors in, state and logs out.

The I/O-free half of the subscription protocol around the pure
:class:`~collector.gate.subscription.Subscriptions` machine: it turns acks and
refusals into state changes, logs each change once, keeps the session's stats
(``connected`` only while both channels are active) and asks for a REST snapshot
when both became active. ``wake`` is set whenever the sending task has work.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

import trio

from collector.gate import protocol
from collector.gate.errors import refusal_hint, refusal_kind
from collector.gate.subscription import Change, ChannelState, SubscriptionError, Subscriptions
from collector.session.state import SessionStats, SessionTiming

# Unlabelled code 1/2 refusals of one channel in a row before they are logged as an error.
LOUD_AFTER: Final = 3


class SubscriptionView:
    """The subscription machine of one session, with its logging and stats."""

    __slots__ = ("_log", "_resync", "_stats", "machine", "wake")

    def __init__(
        self,
        timing: SessionTiming,
        rng: random.Random,
        stats: Callable[[], SessionStats],
        log: Any,  # the session's bound logger
        resync: Callable[[str], None],
    ) -> None:
        self.machine = Subscriptions(
            protocol.CHANNELS,
            ack_timeout=timing.ack_timeout,
            retry_base=timing.resubscribe_base,
            retry_max=timing.resubscribe_max,
            rng=rng,
        )
        self._stats = stats
        self._log = log
        self._resync = resync
        self.wake = trio.Event()

    def reset(self) -> None:
        """A new (or closed) connection: nothing subscribed."""
        self.machine.reset()
        self.show()

    def expire(self, now: float) -> None:
        """Channels whose ack is overdue become refused (retried later)."""
        for change in self.machine.expire(now):
            self.changed(change)

    def acked(self, event: protocol.Ack) -> None:
        """Gate acknowledged a subscribe."""
        if event.event != "subscribe":
            return
        try:
            change = self.machine.acked(event.channel)
        except SubscriptionError as exc:
            self._stats().errors += 1
            self._log.warning("ack_unexpected", error=str(exc))
            return
        if change is not None:
            self.changed(change)
            self.wake.set()

    def error(self, event: protocol.Error) -> None:
        """Gate's error (not an auth error): a refused subscribe, or counted and logged."""
        if event.event == "subscribe" and event.channel in protocol.CHANNELS:
            permission = event.kind is protocol.ErrorKind.PERMISSION
            reason = f"code {event.code}: {event.message}"[:200]
            now = trio.current_time()
            self.changed(self.machine.refused(event.channel, now, reason, permission=permission))
            if event.kind is protocol.ErrorKind.ARGUMENT:
                self._unexplained(event.channel, reason)
            self.wake.set()
            return
        self._stats().errors += 1
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
        self._stats().refusals_unexplained += 1
        if self.machine[channel].failures == LOUD_AFTER:
            self._log.error(
                "subscription_refused_repeatedly",
                channel=channel,
                refusals=LOUD_AFTER,
                reason=reason,
                hint="Gate refuses the subscribe without saying why (no label); it is "
                "retried with backoff: check the key and gate.currencies",
            )

    def changed(self, change: Change) -> None:
        """Log a channel's state change once, and resync when both became active."""
        stats = self._stats()
        was_connected = stats.connected
        self.show()
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

    def show(self) -> None:
        """Copy the machine's summary into the stats."""
        stats = self._stats()
        state, reason = self.machine.summary()
        stats.subscription, stats.subscription_reason = state.value, reason
        stats.connected = self.machine.all_active
