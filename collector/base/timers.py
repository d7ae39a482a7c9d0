"""One task that keeps the deadlines of many sessions (pings, watchdogs).

Two sleeping tasks per session (a pinger and a watchdog) cost a trio timer and a
task switch each per wake-up: at 5,000 idle sessions that was a fifth of the
idle CPU. Here every deadline sits in one heap, and one task per process sleeps
until the earliest and calls what is due. Callbacks are plain functions: they
must not block (set an event, cancel a scope, re-arm). A callback that raises is
logged, and the others fire on: one session's bug never stops the task
every session's deadlines depend on.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from collector.base.logging import get_logger

log = get_logger(__name__)

_NEVER: Final = float("inf")


class Timer:
    """One armed deadline; :meth:`cancel` makes it never fire."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not call the callback (it is dropped when its time comes)."""
        self.cancelled = True


class Timers:
    """Deadlines on the trio clock, driven by :meth:`run` (one task for all)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()  # ties fire in the order they were armed
        self._earlier = trio.Event()
        self.fired = 0

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback()`` at trio time ``when`` (or soon after)."""
        timer = Timer(when, callback)
        if not self._heap or when < self._heap[0][0]:
            self._earlier.set()  # the runner sleeps until a later deadline: wake it
        heapq.heappush(self._heap, (when, next(self._order), timer))
        return timer

    def fire_due(self, now: float) -> None:
        """Call every callback due at ``now``; cancelled ones are dropped."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if not timer.cancelled:
                self.fired += 1
                try:
                    timer.callback()
                except Exception as exc:
                    log.error("timer_callback_failed", error=repr(exc)[:300])

    async def run(self) -> None:
        """Fire deadlines as they come, forever (start it once in a nursery)."""
        while True:
            self.fire_due(trio.current_time())
            self._earlier = trio.Event()
            with trio.move_on_at(self._heap[0][0] if self._heap else _NEVER):
                await self._earlier.wait()


async def run_beside(timers: Timers, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` with ``timers`` driven beside it (for a user without a shared task).

    An exception of ``body`` comes out bare, not inside an exception group.
    """
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        try:
            await body()
        except Exception as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
