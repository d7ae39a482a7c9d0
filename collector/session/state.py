"""What a session is told (timing) and tells (stats): plain data."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from collector.gate.subscription import ChannelState


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


@dataclass(slots=True)
class SessionStats:
    """What a session exposes about itself."""

    connected: bool = False  # the socket is up AND both channels are active
    subscription: str = ChannelState.IDLE.value  # the worst channel's state
    subscription_reason: str = ""  # why it is refused, when it is
    last_frame_at: float | None = None  # any frame, pongs too: the socket lives
    last_data_at: float | None = None  # the last update: the subscription delivers
    refusals: int = 0
    refusals_unexplained: int = 0  # code 1/2 refusals without a label
    frames: int = 0  # every frame: pongs and acks too
    updates: int = 0  # frames carrying account data (pushes)
    frames_invalid: int = 0
    fields_invalid: int = 0
    frames_rejected: int = 0
    points_over_currency_cap: int = 0  # new currencies past gate.max_currencies_per_account
    errors: int = 0
    reconnects: int = 0
    # Handshakes the server answered with an HTTP status (401/403 of them: _auth).
    handshake_refusals: int = 0
    handshake_refusals_auth: int = 0
    gaps: int = 0
    resyncs: int = 0
    points: int = 0
    # Set at a point delivered, for whoever waits for the first one (a key rotation's
    # successor); None otherwise, so an update pays one test, not a call.
    delivered: trio.Event | None = None

    def last_frame_age(self, now: float) -> float | None:
        """Seconds since the last frame (trio clock), None before the first."""
        return None if self.last_frame_at is None else now - self.last_frame_at
