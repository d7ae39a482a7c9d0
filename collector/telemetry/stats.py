"""The collector's own ``collector_stats`` point, sent like any other point.

It is built from the counters of its parts (the supervisor's ``stats_fields()``,
the sink's ``counters()``) and sent into the points channel, so the sink writes
it without knowing where it comes from: nothing downstream calls upstream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import trio

from collector.points import schema
from collector.points.lineproto import Bundle, Point

Fields = dict[str, float | int]


def stats_point(
    sources: Sequence[Callable[[], Fields]], *, instance: str, shard: str, now_ms: int
) -> Point:
    """One ``collector_stats`` point of every source's fields (later sources win a clash)."""
    values: Fields = {}
    for source in sources:
        values.update(source())
    tags = ((schema.TAG_INSTANCE, instance), (schema.TAG_SHARD, shard))
    return Point(schema.COLLECTOR_STATS, tags, values, now_ms)


async def report_stats(
    send: trio.MemorySendChannel[Bundle],
    sources: Sequence[Callable[[], Fields]],
    *,
    instance: str,
    shard: str,
    interval: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """Every ``interval`` seconds, send a stats point; closes ``send`` when cancelled."""
    async with send:
        while True:
            await trio.sleep(interval)
            point = stats_point(sources, instance=instance, shard=shard, now_ms=int(clock() * 1000))
            await send.send([point])
