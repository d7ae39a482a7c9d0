"""The tee between the sessions and the sink that keeps the shard's totals.

Every bundle on its way to the sink passes through a :class:`TotalsTracker`
(the sink never calls upstream, and the sessions never know of totals); every
``interval`` the shard's totals and one state point per account join the stream
as points like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import trio

from collector.points.lineproto import Point
from collector.points.totals import SessionState, TotalsTracker


async def run_totals(
    tracker: TotalsTracker,
    receive: trio.MemoryReceiveChannel[list[Point]],
    forward: trio.MemorySendChannel[list[Point]],
    sessions: Callable[[], Mapping[str, SessionState]],
    interval: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """Forward every bundle, observing it; add totals every ``interval``; close ``forward``.

    Ends when ``receive`` is closed and drained, so the sink still gets every
    bundle and the final totals before its own drain. The final point carries no
    account states: the sessions are already stopped, and "disconnected by our
    own shutdown" is not what a risk person should read as the accounts' state.
    """
    async with forward, trio.open_nursery() as nursery:
        if interval > 0:
            nursery.start_soon(_tick, tracker, forward, sessions, interval, clock)
        async for bundle in receive:
            tracker.observe(bundle)
            try:  # no extra schedule point per bundle while the sink keeps up
                forward.send_nowait(bundle)
            except trio.WouldBlock:
                await forward.send(bundle)  # back-pressure
        nursery.cancel_scope.cancel()
        # no retain(): at shutdown the supervisor's view is being torn down
        await forward.send(tracker.totals(int(clock() * 1000)))


async def _tick(
    tracker: TotalsTracker,
    forward: trio.MemorySendChannel[list[Point]],
    sessions: Callable[[], Mapping[str, SessionState]],
    interval: float,
    clock: Callable[[], float],
) -> None:
    while True:
        await trio.sleep(interval)
        await forward.send(_snapshot(tracker, sessions(), clock))


def _snapshot(
    tracker: TotalsTracker, states: Mapping[str, SessionState], clock: Callable[[], float]
) -> list[Point]:
    now_ms = int(clock() * 1000)
    tracker.retain(states)
    return tracker.totals(now_ms) + tracker.account_states(states, now_ms)
