"""Per-channel subscription state, sans-IO, after h11's ``_state.py``.

Everything that decides whether a channel is subscribed lives here; the session
only reports what it sent and what Gate answered, and asks what to send next.
No clock is read inside: every call takes ``now`` (trio time).

Per channel::

    IDLE --sent--> PENDING --ack--> ACTIVE
                      |
                      +--refusal / no ack by the deadline--> REFUSED --retry due--> (sent)
                      +--permission refusal--> FORBIDDEN --retry due (slow)--> (sent)

A late ack (after the deadline declared the channel refused) still makes it
ACTIVE: Gate did subscribe. An ack for a channel never asked for is an error,
not a log line (:class:`SubscriptionError`). A session is "connected" only when
every channel is ACTIVE: a pong proves the socket, not the subscription.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from collector.base.backoff import backoff_delay

ACK_TIMEOUT: Final = 10.0
RETRY_BASE: Final = 1.0
RETRY_MAX: Final = 60.0
# A permission refusal needs a person to change the key's permissions: retry slowly.
FORBIDDEN_RETRY: Final = 300.0


class ChannelState(Enum):
    """Where one channel's subscription stands."""

    IDLE = "idle"  # nothing sent on this connection yet
    PENDING = "pending"  # subscribe sent, no answer yet
    ACTIVE = "active"  # Gate acknowledged it
    REFUSED = "refused"  # Gate refused (codes 1-3, status fail) or never answered
    FORBIDDEN = "forbidden"  # refused because the key lacks a permission


class SubscriptionError(Exception):
    """An event that is not allowed in the channel's current state."""


@dataclass
class Channel:
    """One channel's state and its deadlines (trio time)."""

    name: str
    state: ChannelState = ChannelState.IDLE
    deadline: float | None = None  # PENDING: when no ack means refused
    retry_at: float | None = None  # REFUSED / FORBIDDEN: when to subscribe again
    failures: int = 0  # consecutive refusals (reset by an ack)
    reason: str = ""  # why it is refused
    # The last answer's state (ACTIVE, REFUSED, FORBIDDEN; IDLE before any): a retry
    # that is refused again is no change, so nothing is logged twice.
    settled: ChannelState = ChannelState.IDLE

    def due(self, now: float) -> bool:
        """True when a subscribe should be sent now."""
        if self.state is ChannelState.IDLE:
            return True
        return self.retry_at is not None and now >= self.retry_at


@dataclass(frozen=True)
class Change:
    """An answer to a subscribe; ``old`` is the previous answer's state, so
    ``old is not new`` is a change worth a log line."""

    channel: str
    old: ChannelState
    new: ChannelState
    reason: str = ""


class Subscriptions:
    """The subscription machines of one session's channels."""

    def __init__(
        self,
        channels: Iterable[str],
        *,
        ack_timeout: float = ACK_TIMEOUT,
        retry_base: float = RETRY_BASE,
        retry_max: float = RETRY_MAX,
        forbidden_retry: float = FORBIDDEN_RETRY,
        rng: random.Random | None = None,
    ) -> None:
        self._channels = {name: Channel(name) for name in channels}
        self._ack_timeout = ack_timeout
        self._retry = (retry_base, retry_max)
        self._forbidden_retry = forbidden_retry
        self._rng = rng or random.Random()

    def __getitem__(self, channel: str) -> Channel:
        return self._channels[channel]

    @property
    def channels(self) -> list[Channel]:
        """Every channel, in the order given."""
        return list(self._channels.values())

    def reset(self) -> None:
        """A new connection: nothing is subscribed; refusals counted so far are kept."""
        for channel in self._channels.values():
            channel.state, channel.deadline, channel.retry_at = ChannelState.IDLE, None, None

    # -- what happened ---------------------------------------------------------------

    def sent(self, name: str, now: float) -> None:
        """A subscribe went out: wait for the ack until ``now + ack_timeout``."""
        channel = self._channels[name]
        if channel.state is ChannelState.PENDING:
            raise SubscriptionError(f"{name}: a subscribe is already pending")
        channel.state = ChannelState.PENDING
        channel.deadline, channel.retry_at = now + self._ack_timeout, None

    def acked(self, name: str) -> Change | None:
        """Gate confirmed the subscribe; a late ack after a timeout counts too."""
        channel = self._channels[name]
        if channel.state is ChannelState.IDLE:
            raise SubscriptionError(f"{name}: an ack for a subscribe never sent")
        if channel.state is ChannelState.ACTIVE:
            return None  # a repeated ack changes nothing
        old, channel.settled = channel.settled, ChannelState.ACTIVE
        channel.state, channel.deadline, channel.retry_at = ChannelState.ACTIVE, None, None
        channel.failures, channel.reason = 0, ""
        return Change(name, old, ChannelState.ACTIVE)

    def refused(self, name: str, now: float, reason: str, *, permission: bool = False) -> Change:
        """Gate refused the subscribe: retry later (slowly when it is about permissions)."""
        channel = self._channels[name]
        old = channel.settled
        channel.failures += 1
        channel.reason = reason
        channel.deadline = None
        if permission:
            channel.state = ChannelState.FORBIDDEN
            channel.retry_at = now + self._forbidden_retry
        else:
            channel.state = ChannelState.REFUSED
            channel.retry_at = now + backoff_delay(channel.failures, *self._retry, self._rng)
        channel.settled = channel.state
        return Change(name, old, channel.state, reason)

    def expire(self, now: float) -> list[Change]:
        """Pending channels whose ack deadline passed become refused."""
        return [
            self.refused(c.name, now, f"no ack within {self._ack_timeout:g} s")
            for c in self._channels.values()
            if c.state is ChannelState.PENDING and c.deadline is not None and now >= c.deadline
        ]

    # -- what to do ------------------------------------------------------------------

    def due(self, now: float) -> list[str]:
        """Channels to (re)subscribe now."""
        return [c.name for c in self._channels.values() if c.due(now)]

    def next_deadline(self) -> float | None:
        """The earliest ack deadline or retry time, None when nothing waits."""
        times = [
            t for c in self._channels.values() for t in (c.deadline, c.retry_at) if t is not None
        ]
        return min(times, default=None)

    @property
    def all_active(self) -> bool:
        """Every channel subscribed: the only state that counts as connected."""
        return all(c.state is ChannelState.ACTIVE for c in self._channels.values())

    def summary(self) -> tuple[ChannelState, str]:
        """The session's subscription state in one word, and why when it is not active.

        The worst channel wins: forbidden, then refused, then pending/idle.
        """
        order = (
            ChannelState.FORBIDDEN,
            ChannelState.REFUSED,
            ChannelState.PENDING,
            ChannelState.IDLE,
        )
        for state in order:
            for channel in self._channels.values():
                if channel.state is state:
                    return state, f"{channel.name}: {channel.reason}" if channel.reason else ""
        return ChannelState.ACTIVE, ""
