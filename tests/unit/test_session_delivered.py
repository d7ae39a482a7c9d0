"""The session's side of a key rotation: a delivered point sets ``SessionStats.delivered``,
the event the runner's rotation waits for (tests/unit/test_runner.py holds the rest).

Rules kept here: no server, no clock; the session's update handler is driven with a
protocol ``Update`` and the real normaliser.
"""

from __future__ import annotations

import structlog
import trio

from collector.gate.protocol import ASSET_DETAIL, Update
from collector.points.lineproto import Bundle
from collector.points.normalize import Normalizer
from collector.session.state import SessionStats
from collector.session.updates import Updates


def handler(stats: SessionStats) -> tuple[Updates, trio.MemoryReceiveChannel[Bundle]]:
    send, receive = trio.open_memory_channel[Bundle](10)
    resyncs: list[str] = []
    updates = Updates(
        Normalizer(7, "desk"), send, lambda: stats, structlog.get_logger(), resyncs.append
    )
    return updates, receive


async def test_a_delivered_point_sets_the_event_a_rotation_waits_for() -> None:
    delivered = trio.Event()
    stats = SessionStats(delivered=delivered)
    updates, receive = handler(stats)
    await updates.handle(Update(ASSET_DETAIL, [{"dts": {"BTC": {"e": "1"}}}], 1, None), 0.0)
    assert stats.points == 1 and len(receive.receive_nowait()) == 1
    assert delivered.is_set()


async def test_an_update_with_no_point_sets_no_event() -> None:
    delivered = trio.Event()
    stats = SessionStats(delivered=delivered)
    updates, _ = handler(stats)
    await updates.handle(Update(ASSET_DETAIL, [], 1, None), 0.0)
    assert stats.points == 0 and not delivered.is_set()


async def test_a_session_nobody_waits_for_delivers_without_an_event() -> None:
    stats = SessionStats()
    updates, receive = handler(stats)
    await updates.handle(Update(ASSET_DETAIL, [{"dts": {"BTC": {"e": "1"}}}], 1, None), 0.0)
    assert stats.points == 1 and len(receive.receive_nowait()) == 1
    assert stats.delivered is None
