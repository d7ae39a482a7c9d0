"""The session's side of a key rotation: a delivered point sets ``SessionStats.delivered``,
the event the runner's rotation waits for (tests/unit/test_runner.py holds the rest).

Rules kept here: no server, no clock; the session's core is fed an update frame
(the real protocol parser and normaliser).
"""

from __future__ import annotations

import random

import orjson
import structlog
import trio

from collector.gate.protocol import ASSET_DETAIL
from collector.gate.signing import ApiCredentials
from collector.session.core import SessionCore
from collector.session.state import SessionStats, SessionTiming


def core(stats: SessionStats) -> SessionCore:
    session = SessionCore(
        7,
        "desk",
        ApiCredentials("key", "secret"),
        ["BTC"],
        structlog.get_logger(),
        timing=SessionTiming(),
        rng=random.Random(1),
        max_currencies=10,
    )
    session.use_stats(stats)
    return session


def update(dts: dict[str, dict[str, str]]) -> bytes:
    result = {"u": 1, "t": 1_700_000_000, "dts": dts}
    return orjson.dumps(
        {"time": 1_700_000_000, "channel": ASSET_DETAIL, "event": "update", "result": result}
    )


def test_a_delivered_point_sets_the_event_a_rotation_waits_for() -> None:
    delivered = trio.Event()
    stats = SessionStats(delivered=delivered)
    records = core(stats).received(update({"BTC": {"e": "1"}}), 0.0)
    assert stats.points == 1 and records is not None and len(records) == 1
    assert delivered.is_set()


def test_an_update_with_no_point_sets_no_event() -> None:
    delivered = trio.Event()
    stats = SessionStats(delivered=delivered)
    assert core(stats).received(update({}), 0.0) == []
    assert stats.points == 0 and stats.updates == 1 and not delivered.is_set()


def test_a_session_nobody_waits_for_delivers_without_an_event() -> None:
    stats = SessionStats()
    records = core(stats).received(update({"BTC": {"e": "1"}}), 0.0)
    assert stats.points == 1 and records is not None and len(records) == 1
    assert stats.delivered is None
