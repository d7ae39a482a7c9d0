"""One connection's ping and no-frame deadlines, kept in the shared :class:`Timers`.

No task of its own: the ping deadline calls ``on_ping`` (the session's sending
task sends it) and re-arms; the watchdog deadline calls ``on_silence`` once no
frame came for ``frame_timeout``, and otherwise re-arms itself at the deadline
the latest frame set (no heap update per frame).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from collector.base.timers import Timer, Timers


class KeepAlive:
    """Arm on connect, disarm on close."""

    __slots__ = (
        "_frame_timeout",
        "_last_frame",
        "_on_ping",
        "_on_silence",
        "_ping_interval",
        "_ping_timer",
        "_timers",
        "_watch_timer",
    )

    def __init__(
        self,
        timers: Timers,
        ping_interval: float,
        frame_timeout: float,
        last_frame: Callable[[], float | None],
        on_ping: Callable[[], None],
        on_silence: Callable[[str], None],
    ) -> None:
        self._timers = timers
        self._ping_interval = ping_interval
        self._frame_timeout = frame_timeout
        self._last_frame = last_frame
        self._on_ping = on_ping
        self._on_silence = on_silence
        self._ping_timer: Timer | None = None
        self._watch_timer: Timer | None = None

    def arm(self) -> None:
        """Start both deadlines from now."""
        self.disarm()
        now = trio.current_time()
        self._ping_timer = self._timers.call_at(now + self._ping_interval, self._ping)
        self._watch_timer = self._timers.call_at(now + self._frame_timeout, self._watch)

    def disarm(self) -> None:
        """Neither deadline fires any more."""
        for timer in (self._ping_timer, self._watch_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._watch_timer = None

    def _ping(self) -> None:
        self._ping_timer = self._timers.call_at(
            trio.current_time() + self._ping_interval, self._ping
        )
        self._on_ping()

    def _watch(self) -> None:
        now = trio.current_time()
        deadline = (self._last_frame() or now) + self._frame_timeout
        if now >= deadline:
            self._watch_timer = None
            self._on_silence(f"no frame for {self._frame_timeout:g} s")
            return
        self._watch_timer = self._timers.call_at(deadline, self._watch)
