"""The shard's totals on the stream to the sink, every stats interval.

The :class:`~collector.points.totals.TotalsTracker` is fed where the values are
already at hand, with no task between the sessions and the sink: each session's
hot path tells it the values it wrote (:class:`collector.points.direct.Observer`)
and the snapshot scheduler the points it sends. This task only adds, every
``interval``, the shard's totals and one state point per account to the stream,
as points like any other (the sink never calls upstream).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import trio

from collector.points.lineproto import Bundle, Point
from collector.points.totals import SessionState, TotalsTracker


async def run_totals(
    tracker: TotalsTracker,
    send: trio.MemorySendChannel[Bundle],
    sessions: Callable[[], Mapping[str, SessionState]],
    interval: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """Every ``interval``: totals and account states into ``send``, until cancelled.

    ``send`` (a clone of its own) is closed when the task ends, so the sink's
    channel still closes once every other sender is done.
    """
    async with send:
        while True:
            await trio.sleep(interval)
            await send.send(snapshot(tracker, sessions(), clock))


def snapshot(
    tracker: TotalsTracker, states: Mapping[str, SessionState], clock: Callable[[], float]
) -> list[Point]:
    """The shard's totals and its accounts' state points, now."""
    now_ms = int(clock() * 1000)
    tracker.retain(states)
    return tracker.totals(now_ms) + tracker.account_states(states, now_ms)


def final_totals(tracker: TotalsTracker, clock: Callable[[], float] = time.time) -> list[Point]:
    """The last totals at shutdown, without account states.

    The sessions are already stopped, and "disconnected by our own shutdown" is
    not what a risk person should read as the accounts' state.
    """
    # no retain(): at shutdown the supervisor's view is being torn down
    return tracker.totals(int(clock() * 1000))
