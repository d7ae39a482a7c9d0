"""The session's sans-IO core: frames and times in, frames to send, deadlines, states,
records and close reasons out.

Rules kept here: pure, no trio and no clock (every ``now`` and ``wall`` is a number
passed in); the real protocol parser, signer, normaliser and subscription machine;
the jitter from a seeded ``random.Random``, its draws replayed for exact values;
logs read with ``structlog.testing.capture_logs``.
"""

from __future__ import annotations

import math
import random
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from collector.gate.errors import Refusal, refusal_hint
from collector.gate.protocol import ASSET_DETAIL, ASSETS, AuthenticationFailed
from collector.gate.signing import ApiCredentials, ws_auth
from collector.gate.subscription import FORBIDDEN_RETRY
from collector.points.book import AccountBook
from collector.points.lineproto import Point
from collector.points.totals import TotalsTracker
from collector.session.core import LOUD_AFTER, NOT_CONNECTED, SessionCore
from collector.session.state import SessionStats, SessionTiming

ACCOUNT, LABEL = 7, "desk"
CREDS = ApiCredentials("key", "secret")
WALL = 1_700_000_000  # the wall clock's seconds each request is signed with
SEED = 11
TIMING = SessionTiming(
    ping_interval=15, frame_timeout=45, ack_timeout=7, resubscribe_base=2, resubscribe_max=8
)
T0 = 100.0  # the trio time the connection opens at
# No ping or watchdog in the way of the subscription's deadlines.
QUIET = SessionTiming(
    ping_interval=1000, frame_timeout=2000, ack_timeout=10, resubscribe_base=2, resubscribe_max=8
)


class Core:
    """A core under test, with the snapshots it asked for."""

    def __init__(self, currencies: tuple[str, ...] = ("BTC",), **kwargs: Any) -> None:
        self.resyncs: list[tuple[int, str]] = []
        kwargs.setdefault("timing", TIMING)
        kwargs.setdefault("max_currencies", 10)
        self.core = SessionCore(
            ACCOUNT,
            LABEL,
            CREDS,
            list(currencies),
            _log(),
            rng=random.Random(SEED),
            on_resync=lambda account, reason: self.resyncs.append((account, reason)),
            **kwargs,
        )

    @property
    def stats(self) -> SessionStats:
        return self.core.stats

    def due(self, now: float, wall: int = WALL) -> list[dict[str, Any]]:
        return [orjson.loads(frame) for frame in self.core.due(now, wall)]

    def receive(self, message: dict[str, Any], now: float) -> Any:
        return self.core.received(orjson.dumps(message), now)

    def connected(self) -> None:
        """Open at T0, both subscribes sent and acknowledged at T0 + 1."""
        self.core.connection_made(T0)
        self.core.due(T0, WALL)
        for channel in (ASSETS, ASSET_DETAIL):
            self.receive(ack(channel), T0 + 1)


def _log() -> Any:
    import structlog

    return structlog.get_logger()  # unbound: each call is configured then (capture_logs)


def request(channel: str, event: str, payload: list[str], wall: int = WALL) -> dict[str, Any]:
    """A signed request as it must go out."""
    auth = ws_auth(channel, event, wall, CREDS)
    return {"time": wall, "channel": channel, "event": event, "payload": payload, "auth": auth}


def ping(wall: int = WALL) -> dict[str, Any]:
    return {"time": wall, "channel": "unified.ping"}


SUBSCRIBE_BOTH = [request(ASSETS, "subscribe", []), request(ASSET_DETAIL, "subscribe", ["BTC"])]


def ack(channel: str, event: str = "subscribe") -> dict[str, Any]:
    return {"time": WALL, "channel": channel, "event": event, "result": {"status": "success"}}


def error(channel: str, code: int, message: str, event: str = "subscribe") -> dict[str, Any]:
    return {
        "time": WALL,
        "channel": channel,
        "event": event,
        "error": {"code": code, "message": message},
    }


def detail(u: int, dts: dict[str, dict[str, str]]) -> dict[str, Any]:
    result = {"u": u, "t": WALL, "dts": dts}
    return {
        "time": WALL,
        "time_ms": WALL * 1000 + 123,
        "channel": ASSET_DETAIL,
        "event": "update",
        "result": result,
    }


def detail_line(u: int, equity: str = "1.5") -> str:
    return (
        f"gate_unified_asset_detail,account=7,account_label=desk,currency=BTC "
        f"equity={equity},u={u}i,refresh_time={WALL}i {WALL * 1000 + 123}"
    )


def retries(count: int, base: float = 2.0, cap: float = 8.0) -> list[float]:
    """The first ``count`` backoff waits the seeded jitter gives (1st, 2nd, ... refusal)."""
    rng = random.Random(SEED)
    return [rng.uniform(min(cap, base * 2**n) / 2, min(cap, base * 2**n)) for n in range(count)]


# -- a connection's start ---------------------------------------------------------------


def test_a_new_connection_subscribes_both_channels_at_once_and_waits_for_the_acks() -> None:
    c = Core()
    c.core.connection_made(T0)
    assert c.stats.last_frame_at == T0
    assert (c.stats.subscription, c.stats.connected) == ("idle", False)
    assert c.due(T0) == SUBSCRIBE_BOTH
    assert (c.stats.subscription, c.stats.connected) == ("pending", False)
    assert c.core.next_deadline() == T0 + 7  # the acks' deadline
    assert c.due(T0 + 6.9) == []  # pending: not sent again
    assert not c.core.closed and c.core.close_reason is None


def test_both_acks_make_it_connected_and_ask_for_one_snapshot() -> None:
    c = Core()
    c.core.connection_made(T0)
    c.due(T0)
    with capture_logs() as logs:
        assert c.receive(ack(ASSETS), T0 + 1) is None
        assert c.stats.connected is False and c.resyncs == []  # one channel is not enough
        assert c.stats.subscription == "pending"
        c.receive(ack(ASSET_DETAIL), T0 + 2)
    assert (c.stats.subscription, c.stats.connected) == ("active", True)
    assert c.resyncs == [(ACCOUNT, "subscribed")] and c.stats.resyncs == 1
    assert [(e["event"], e.get("channel")) for e in logs] == [
        ("subscribed", ASSETS),
        ("subscribed", ASSET_DETAIL),
        ("session_connected", None),
    ]
    assert c.stats.frames == 2 and c.stats.last_frame_at == T0 + 2
    assert c.core.next_deadline() == T0 + 15  # the ping


def test_a_repeated_ack_and_an_unsubscribe_ack_change_nothing() -> None:
    c = Core()
    c.connected()
    with capture_logs() as logs:
        c.receive(ack(ASSETS), T0 + 3)
        c.receive(ack(ASSETS, "unsubscribe"), T0 + 3)
    assert logs == [] and c.resyncs == [(ACCOUNT, "subscribed")]
    assert (c.stats.connected, c.stats.errors) == (True, 0)


def test_an_ack_for_a_subscribe_never_sent_is_an_error_not_a_state() -> None:
    c = Core()
    c.core.connection_made(T0)
    with capture_logs() as logs:
        c.receive(ack(ASSETS), T0)
    assert c.stats.errors == 1 and c.stats.subscription == "idle"
    assert logs == [
        {
            "event": "ack_unexpected",
            "log_level": "warning",
            "error": f"{ASSETS}: an ack for a subscribe never sent",
        }
    ]


# -- pings and the watchdog ---------------------------------------------------------------


def test_the_ping_goes_out_every_ping_interval() -> None:
    c = Core()
    c.connected()
    assert c.due(T0 + 14.9) == []
    assert c.due(T0 + 15, WALL + 15) == [ping(WALL + 15)]
    assert c.due(T0 + 15) == []  # once
    assert c.core.next_deadline() == T0 + 30
    c.receive({"time": WALL, "channel": "unified.pong"}, T0 + 15.5)
    assert c.due(T0 + 30.2, WALL + 30) == [ping(WALL + 30)]
    assert c.core.next_deadline() == pytest.approx(T0 + 45.2)
    assert c.stats.frames == 3  # the acks and the pong


def test_no_frame_within_frame_timeout_closes_the_connection() -> None:
    c = Core(timing=SessionTiming(ping_interval=15, frame_timeout=20))
    c.connected()  # the last frame at T0 + 1
    assert c.core.next_deadline() == T0 + 15
    c.due(T0 + 15)
    assert c.core.next_deadline() == T0 + 21  # the watchdog comes before the next ping
    assert c.due(T0 + 20.9) == []
    assert not c.core.closed
    assert c.due(T0 + 21) == []
    assert c.core.closed and c.core.close_reason == "no frame for 20 s"
    assert c.core.next_deadline() == math.inf
    assert c.due(T0 + 30) == []  # closed: no ping either


def test_any_frame_moves_the_watchdog() -> None:
    c = Core(timing=SessionTiming(ping_interval=15, frame_timeout=20))
    c.connected()
    c.receive({"time": WALL, "channel": "unified.pong"}, T0 + 19)
    c.due(T0 + 15)
    assert c.core.next_deadline() == T0 + 30  # the next ping; the watchdog at T0 + 39
    assert c.due(T0 + 30) == [ping()]
    assert not c.core.closed
    assert c.core.next_deadline() == T0 + 39


# -- refusals and retries ------------------------------------------------------------------


def test_no_ack_by_the_deadline_refuses_and_retries_both_with_backoff() -> None:
    c = Core()
    c.core.connection_made(T0)
    c.due(T0)
    with capture_logs() as logs:
        assert c.due(T0 + 7) == []
    reason = "no ack within 7 s"
    assert (c.stats.subscription, c.stats.subscription_reason) == ("refused", f"{ASSETS}: {reason}")
    assert c.stats.refusals == 2
    assert logs == [
        {"event": "subscription_refused", "log_level": "warning", "channel": ch, "reason": reason}
        for ch in (ASSETS, ASSET_DETAIL)
    ]
    rng = random.Random(SEED)
    assets_at, detail_at = T0 + 7 + rng.uniform(1, 2), T0 + 7 + rng.uniform(1, 2)
    assert c.core.next_deadline() == min(assets_at, detail_at)
    assert c.due(min(assets_at, detail_at) - 0.001) == []
    assert c.due(max(assets_at, detail_at), WALL + 12) == [
        request(ASSETS, "subscribe", [], WALL + 12),
        request(ASSET_DETAIL, "subscribe", ["BTC"], WALL + 12),
    ]
    assert c.stats.subscription == "pending"


def test_a_refused_subscribe_is_retried_with_capped_backoff_and_logged_once() -> None:
    c = Core(timing=QUIET)
    c.core.connection_made(T0)
    c.due(T0)
    c.receive(ack(ASSET_DETAIL), T0)
    now, sent = T0, []
    with capture_logs() as logs:
        for wait in retries(4):
            c.receive(error(ASSETS, 3, "service busy"), now)
            assert c.core.next_deadline() == now + wait
            now += wait
            sent.append(c.due(now))
    assert sent == [[request(ASSETS, "subscribe", [])]] * 4
    assert [w for w in retries(4)][3] >= 4  # the cap's half: the waits grew
    assert c.stats.refusals == 4 and c.stats.refusals_unexplained == 0
    assert (c.stats.subscription, c.stats.subscription_reason) == (
        "pending",
        f"{ASSETS}: code 3: service busy",
    )
    assert [e["event"] for e in logs] == ["subscription_refused"]  # once, not each retry
    c.receive(ack(ASSETS), now)
    assert c.stats.connected and c.resyncs == [(ACCOUNT, "subscribed")]


def test_a_permission_refusal_is_forbidden_loud_once_and_retried_slowly() -> None:
    c = Core(timing=QUIET)
    c.core.connection_made(T0)
    c.due(T0)
    c.receive(ack(ASSET_DETAIL), T0)
    message = 'not allowed {"label":"FORBIDDEN"}'
    with capture_logs() as logs:
        c.receive(error(ASSETS, 4, message), T0 + 1)
    with capture_logs() as again:
        c.due(T0 + 1 + FORBIDDEN_RETRY)
        c.receive(error(ASSETS, 4, message), T0 + 2 + FORBIDDEN_RETRY)
    assert again == []  # the same refusal again: no new line
    reason = f"code 4: {message}"
    assert logs == [
        {
            "event": "subscription_forbidden",
            "log_level": "error",
            "channel": ASSETS,
            "reason": reason,
            "hint": refusal_hint(Refusal.PERMISSION)
            + "; the key is not replaced, the subscribe is retried slowly",
        }
    ]
    assert (c.stats.subscription, c.stats.subscription_reason) == (
        "forbidden",
        f"{ASSETS}: {reason}",
    )
    assert c.stats.refusals == 2 and not c.core.closed
    assert c.core.next_deadline() == T0 + 2 + 2 * FORBIDDEN_RETRY


def test_unlabelled_argument_refusals_are_counted_and_loud_once_they_repeat() -> None:
    c = Core()
    c.core.connection_made(T0)
    c.due(T0)
    now = T0
    with capture_logs() as logs:
        for wait in retries(LOUD_AFTER + 1):
            c.receive(error(ASSET_DETAIL, 2, "auth faild"), now)
            now += wait
            c.due(now)
    loud = [e for e in logs if e["log_level"] == "error"]
    assert loud == [
        {
            "event": "subscription_refused_repeatedly",
            "log_level": "error",
            "channel": ASSET_DETAIL,
            "refusals": 3,
            "reason": "code 2: auth faild",
            "hint": "Gate refuses the subscribe without saying why (no label); it is "
            "retried with backoff: check the key and gate.currencies",
        }
    ]
    assert c.stats.refusals_unexplained == LOUD_AFTER + 1


def test_a_refused_key_closes_with_authentication_failed() -> None:
    c = Core()
    c.core.connection_made(T0)
    c.due(T0)
    c.receive(error(ASSETS, 4, '{"label":"INVALID_KEY"}'), T0 + 1)
    reason = c.core.close_reason
    assert isinstance(reason, AuthenticationFailed)
    assert (reason.account, reason.reason) == (ACCOUNT, '{"label":"INVALID_KEY"}')
    assert c.core.closed and c.due(T0 + 100) == [] and c.stats.refusals == 0
    assert c.core.connection_lost(WALL) == (reason, [])  # no goodbye after a refusal


def test_another_gate_error_is_counted_and_logged() -> None:
    c = Core()
    c.connected()
    with capture_logs() as logs:
        c.receive(error(ASSETS, 3, "busy", event="unsubscribe"), T0 + 2)
    assert c.stats.errors == 1 and c.stats.connected and c.stats.refusals == 0
    assert logs == [
        {
            "event": "gate_error",
            "log_level": "warning",
            "channel": ASSETS,
            "event_name": "unsubscribe",
            "code": 3,
            "message": "busy",
            "kind": "server",
        }
    ]


# -- other frames -----------------------------------------------------------------------------


def test_an_invalid_frame_is_counted_and_logged() -> None:
    c = Core()
    c.core.connection_made(T0)
    with capture_logs() as logs:
        assert c.core.received(b"not json", T0 + 1) is None
    assert (c.stats.frames, c.stats.frames_invalid, c.stats.last_frame_at) == (1, 1, T0 + 1)
    assert logs == [
        {
            "event": "frame_invalid",
            "log_level": "warning",
            "reason": "not JSON",
            "frame": "not json",
        }
    ]


def test_upgrade_closes_the_connection() -> None:
    c = Core()
    c.connected()
    assert c.receive({"time": WALL, "channel": ASSETS, "event": "upgrade"}, T0 + 2) is None
    assert c.core.close_reason == "the server asked to reconnect (upgrade)"
    assert c.core.next_deadline() == math.inf


# -- updates ----------------------------------------------------------------------------------


def test_an_update_becomes_records_for_the_sink_and_is_counted() -> None:
    c = Core()
    c.connected()
    records = c.receive(detail(5, {"BTC": {"e": "1.5", "a": "x"}}), T0 + 3)
    assert records == [detail_line(5)]
    stats = c.stats
    assert (stats.updates, stats.points, stats.fields_invalid) == (1, 1, 1)
    assert (stats.last_data_at, stats.last_frame_at, stats.frames) == (T0 + 3, T0 + 3, 3)
    assert c.resyncs == [(ACCOUNT, "subscribed")]  # no gap: no snapshot


def test_a_sequence_gap_writes_its_point_first_and_asks_for_a_snapshot() -> None:
    c = Core()
    c.connected()
    c.receive(detail(5, {"BTC": {"e": "1"}}), T0 + 2)
    with capture_logs() as logs:
        records = c.receive(detail(9, {"BTC": {"e": "1.5"}}), T0 + 3)
    gap = Point(
        "gate_sequence_gap",
        (("account", "7"), ("channel", ASSET_DETAIL), ("reason", "sequence")),
        {"expected": 6, "received": 9, "missed": 3},
        WALL * 1000 + 123,
    )
    assert records == [gap, detail_line(9)]
    assert c.resyncs == [(ACCOUNT, "subscribed"), (ACCOUNT, "gap")]
    assert (c.stats.gaps, c.stats.resyncs, c.stats.points) == (1, 2, 3)
    assert logs == [
        {
            "event": "sequence_gap",
            "log_level": "warning",
            "channel": ASSET_DETAIL,
            "reason": "sequence",
            "expected": 6,
            "received": 9,
            "missed": 3,
        }
    ]


def test_a_reconnect_is_recorded_by_the_next_update_without_a_gap_count() -> None:
    c = Core()
    c.connected()
    c.receive(detail(5, {"BTC": {"e": "1"}}), T0 + 2)
    c.core.connection_lost(WALL)
    c.core.retrying()
    assert c.stats.reconnects == 1
    c.connected()
    records = c.receive(detail(9, {"BTC": {"e": "1.5"}}), T0 + 3)
    assert records[0].tags[2] == ("reason", "reconnect") and records[1] == detail_line(9)
    assert c.stats.gaps == 0
    assert c.resyncs == [(ACCOUNT, "subscribed")] * 2  # each connection's own, no "gap"


def test_a_frame_naming_another_account_is_rejected() -> None:
    c = Core(other_accounts={8})
    c.connected()
    frame = {"time": WALL, "channel": ASSETS, "event": "update", "result": {"u": 8, "t": WALL}}
    with capture_logs() as logs:
        assert c.receive(frame, T0 + 2) == []
    reason = f"u=8 on {ASSETS} is not account 7: the key belongs to another account"
    assert (c.stats.frames_rejected, c.stats.updates, c.stats.points) == (1, 1, 0)
    assert logs == [
        {"event": "frame_rejected", "log_level": "error", "channel": ASSETS, "reason": reason}
    ]


def test_currencies_over_the_cap_are_dropped_counted_and_logged_once() -> None:
    c = Core(max_currencies=1)
    c.connected()
    with capture_logs() as first:
        c.receive(detail(1, {"BTC": {"e": "1"}, "ETH": {"e": "2"}}), T0 + 2)
    with capture_logs() as second:
        c.receive(detail(2, {"BTC": {"e": "1"}, "ETH": {"e": "2"}}), T0 + 3)
    assert c.stats.points_over_currency_cap == 2 and c.stats.points == 2
    assert second == []
    assert first == [
        {
            "event": "currency_cap_reached",
            "log_level": "error",
            "cap": 1,
            "hint": "this account sends more currencies than gate.max_currencies_per_account;"
            " new ones are dropped and counted (points_over_currency_cap)",
        }
    ]


def test_a_clean_update_logs_nothing_and_counts_no_fault() -> None:
    c = Core()
    c.connected()
    with capture_logs() as logs:
        assert c.receive(detail(1, {"BTC": {"e": "1.5"}}), T0 + 2) == [detail_line(1)]
    stats = c.stats
    assert logs == []
    faults = (stats.fields_invalid, stats.points_over_currency_cap, stats.frames_rejected)
    assert faults == (0, 0, 0) and stats.gaps == 0


# -- a change of currencies ----------------------------------------------------------------


def test_new_currencies_unsubscribe_the_old_and_subscribe_the_new_on_the_live_connection() -> None:
    c = Core(("BTC", "ETH"))
    c.connected()
    c.core.change_currencies(["USDT"])
    with capture_logs() as logs:
        assert c.due(T0 + 5) == [
            request(ASSET_DETAIL, "unsubscribe", ["BTC", "ETH"]),
            request(ASSET_DETAIL, "subscribe", ["USDT"]),
        ]
    assert logs == [
        {
            "event": "resubscribed",
            "log_level": "info",
            "channel": ASSET_DETAIL,
            "currencies": ["USDT"],
        }
    ]
    assert c.due(T0 + 5) == []  # once
    assert not c.core.closed and c.stats.connected
    goodbye = [request(ASSETS, "unsubscribe", []), request(ASSET_DETAIL, "unsubscribe", ["USDT"])]
    assert c.core.connection_lost(WALL) == ("stopped", [orjson.dumps(r) for r in goodbye])


def test_currencies_changed_back_before_the_next_send_change_nothing() -> None:
    c = Core()
    c.connected()
    c.core.change_currencies(["ETH"])
    c.core.change_currencies(["BTC"])
    assert c.due(T0 + 5) == []


def test_currencies_changed_before_the_subscribe_go_into_it() -> None:
    c = Core()
    c.core.change_currencies(["ETH"])  # between connections
    c.core.connection_made(T0)
    assert c.due(T0) == [
        request(ASSETS, "subscribe", []),
        request(ASSET_DETAIL, "subscribe", ["ETH"]),
    ]
    assert c.due(T0 + 1) == []


# -- closing ------------------------------------------------------------------------------------


def test_a_connection_stopped_from_outside_leaves_politely_and_shows_nothing_subscribed() -> None:
    c = Core()
    c.connected()
    reason, goodbye = c.core.connection_lost(WALL + 7)
    assert reason == "stopped" and c.core.closed
    assert goodbye == [
        orjson.dumps(request(ASSETS, "unsubscribe", [], WALL + 7)),
        orjson.dumps(request(ASSET_DETAIL, "unsubscribe", ["BTC"], WALL + 7)),
    ]
    assert (c.stats.connected, c.stats.subscription) == (False, "idle")
    assert c.core.next_deadline() == math.inf and c.due(T0 + 100) == []


def test_stopped_before_any_subscribe_unsubscribes_the_configured_currencies() -> None:
    c = Core(("ETH",))
    c.core.connection_made(T0)
    assert c.core.connection_lost(WALL)[1][1] == orjson.dumps(
        request(ASSET_DETAIL, "unsubscribe", ["ETH"])
    )


def test_the_first_close_reason_stays() -> None:
    c = Core()
    c.connected()
    assert c.core.close("closed by the server (going away)") == "closed by the server (going away)"
    assert c.core.close("closed while sending (broken)") == "closed by the server (going away)"
    assert c.core.connection_lost(WALL) == ("closed by the server (going away)", [])


def test_a_new_connection_starts_afresh_after_a_close() -> None:
    c = Core()
    c.connected()
    c.receive({"time": WALL, "channel": ASSETS, "event": "upgrade"}, T0 + 2)
    c.core.connection_lost(WALL)
    c.core.connection_made(T0 + 50)
    assert not c.core.closed and c.core.close_reason is None
    assert c.due(T0 + 50) == SUBSCRIBE_BOTH
    assert c.core.next_deadline() == T0 + 57


def test_before_any_connection_nothing_is_due() -> None:
    c = Core()
    assert c.due(T0) == [] and c.core.next_deadline() == math.inf
    assert c.core.closed and c.core.close_reason == NOT_CONNECTED


# -- between connections ------------------------------------------------------------------------


def test_a_refused_handshake_is_counted_and_shown() -> None:
    c = Core()
    c.core.handshake_refused(True, "handshake refused with HTTP 403" + "x" * 300)
    assert (c.stats.handshake_refusals, c.stats.handshake_refusals_auth) == (1, 1)
    assert c.stats.subscription == "forbidden"
    assert c.stats.subscription_reason == ("handshake refused with HTTP 403" + "x" * 300)[:200]
    c.core.handshake_refused(False, "handshake refused with HTTP 429")
    assert (c.stats.handshake_refusals, c.stats.handshake_refusals_auth) == (2, 1)
    assert (c.stats.subscription, c.stats.subscription_reason) == (
        "refused",
        "handshake refused with HTTP 429",
    )


def test_counts_go_into_the_owners_stats_and_a_snapshot_is_counted_with_no_one_to_ask() -> None:
    core = SessionCore(
        ACCOUNT,
        LABEL,
        CREDS,
        ["BTC"],
        _log(),
        timing=TIMING,
        rng=random.Random(1),
        max_currencies=5,
    )
    mine = SessionStats(reconnects=4)
    core.use_stats(mine)
    core.retrying()
    core.connection_made(T0)
    core.due(T0, WALL)
    for channel in (ASSETS, ASSET_DETAIL):
        core.received(orjson.dumps(ack(channel)), T0)
    assert core.stats is mine
    assert (mine.reconnects, mine.connected, mine.resyncs, mine.frames) == (5, True, 1, 2)


def test_counts_add_up_over_frames() -> None:
    c = Core(other_accounts={8})
    c.connected()
    c.core.use_stats(SessionStats(connected=True, frames=10, gaps=3))
    for n in range(2):
        c.core.received(b"not json", T0 + 2)
        c.receive(ack(ASSETS, "subscribe"), T0 + 2)  # repeated: no change, no error
        c.receive(error(ASSETS, 3, "busy", event="unsubscribe"), T0 + 2)
        c.receive(detail(10 + 5 * n, {"BTC": {"e": "1", "a": "x"}}), T0 + 3)
        frame = {"time": WALL, "channel": ASSETS, "event": "update", "result": {"u": 8, "t": WALL}}
        c.receive(frame, T0 + 3)
    stats = c.stats
    assert (stats.frames, stats.frames_invalid, stats.errors, stats.updates) == (20, 2, 2, 4)
    assert (stats.fields_invalid, stats.frames_rejected, stats.gaps, stats.points) == (2, 2, 4, 3)


def test_unexpected_acks_add_up() -> None:
    c = Core()
    c.core.connection_made(T0)
    c.receive(ack(ASSETS), T0)
    c.receive(ack(ASSET_DETAIL), T0)
    assert c.stats.errors == 2


def test_a_long_refusal_is_cut_to_200_characters() -> None:
    c = Core()
    c.core.connection_made(T0)
    c.due(T0)
    c.receive(error(ASSETS, 3, "x" * 300), T0 + 1)
    assert c.stats.subscription_reason == f"{ASSETS}: " + ("code 3: " + "x" * 300)[:200]


def test_stopped_after_a_change_not_yet_sent_unsubscribes_what_was_subscribed() -> None:
    c = Core()
    c.connected()
    c.core.change_currencies(["ETH"])
    assert c.core.connection_lost(WALL)[1][1] == orjson.dumps(
        request(ASSET_DETAIL, "unsubscribe", ["BTC"])
    )


def test_updates_reach_the_totals_and_the_accounts_facts() -> None:
    tracker, facts = TotalsTracker("host", "0/1"), AccountBook().facts(ACCOUNT)
    c = Core(observer=tracker, facts=facts)
    c.connected()
    c.receive(detail(1, {"BTC": {"e": "1.5"}}), T0 + 2)
    assert facts.last_push_ms == WALL * 1000 + 123
    btc = [p for p in tracker.totals(0) if p.measurement == "gate_currency_totals"]
    assert [(p.tags[-1], p.fields["equity"]) for p in btc] == [(("currency", "BTC"), 1.5)]
