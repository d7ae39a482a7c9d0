"""Totals rules found by mutation testing (tests/MUTATION.md): times, labels, forgetting."""

from __future__ import annotations

from collector.points import schema
from collector.points.lineproto import FieldValue, Point
from collector.points.totals import SessionState, TotalsTracker
from tests.test_totals import H, assets, detail, fields_of

CONNECTED = schema.SESSION_CONNECTED


def state_of(points: list[Point], account: str) -> Point:
    (found,) = [p for p in points if dict(p.tags)[schema.TAG_ACCOUNT] == account]
    return found


def test_every_point_is_stamped_with_now() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", H, unified_account_total_equity=1.0)])
    tracker.observe([detail("1", "USDT", H, equity=1.0)])
    assert {p.time_ms for p in tracker.totals(5 * H)} == {5 * H}
    sessions = {"1": SessionState("acct-1", CONNECTED)}
    assert [p.time_ms for p in tracker.account_states(sessions, 7 * H)] == [7 * H]


def test_each_account_keeps_its_own_time_order() -> None:
    # Account 2's value is older than account 1's: it is still its newest.
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", 5 * H, unified_account_total_equity=1.0)])
    tracker.observe([assets("2", 1 * H, unified_account_total_equity=2.0)])
    tracker.observe([detail("1", "USDT", 5 * H, equity=10.0)])
    tracker.observe([detail("1", "BTC", 1 * H, equity=0.5)])
    tracker.observe([detail("2", "USDT", 1 * H, equity=20.0)])
    points = tracker.totals(6 * H)
    assert fields_of(points, schema.BROKER_TOTALS)[schema.EQUITY] == 3.0
    usdt = fields_of(points, schema.CURRENCY_TOTALS, currency="USDT")
    assert (usdt[schema.DETAIL_EQUITY], usdt[schema.TOTALS_ACCOUNTS]) == (30.0, 2)
    assert fields_of(points, schema.CURRENCY_TOTALS, currency="BTC")[schema.DETAIL_EQUITY] == 0.5


def test_a_detail_point_without_a_currency_is_ignored() -> None:
    tracker = TotalsTracker("host", "0/1")
    tags = ((schema.TAG_ACCOUNT, "1"), (schema.TAG_ACCOUNT_LABEL, "acct-1"))
    tracker.observe([Point(schema.ASSET_DETAIL, tags, {"equity": 1.0}, H)])
    assert [p.measurement for p in tracker.totals(2 * H)] == [schema.BROKER_TOTALS]
    sessions = {"1": SessionState("session-label", CONNECTED)}
    (state,) = tracker.account_states(sessions, 2 * H)
    assert schema.STATE_SECONDS_SINCE_UPDATE not in state.fields
    assert dict(state.tags)[schema.TAG_ACCOUNT_LABEL] == "session-label"


def test_an_account_with_only_currency_points_has_a_label_and_an_update_time() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([detail("1", "USDT", 2 * H, equity=1.0)])
    sessions = {"1": SessionState("session-label", CONNECTED)}
    (state,) = tracker.account_states(sessions, 3 * H)
    assert dict(state.tags)[schema.TAG_ACCOUNT_LABEL] == "acct-1"  # what the data said
    assert state.fields[schema.STATE_SECONDS_SINCE_UPDATE] == 3600.0


def test_the_label_of_the_data_wins_over_the_sessions() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", H, unified_account_total_equity=1.0)])
    sessions = {"1": SessionState("renamed", CONNECTED)}
    (state,) = tracker.account_states(sessions, H)
    assert dict(state.tags) == {
        schema.TAG_ACCOUNT: "1",
        schema.TAG_ACCOUNT_LABEL: "acct-1",
        schema.TAG_INSTANCE: "host",
        schema.TAG_SHARD: "0/1",
    }


def test_a_point_without_a_label_is_labelled_with_its_account() -> None:
    tracker = TotalsTracker("host", "0/1")
    tags = ((schema.TAG_ACCOUNT, "1"),)
    tracker.observe([Point(schema.ASSETS, tags, {schema.EQUITY: 1.0}, H)])
    (state,) = tracker.account_states({"1": SessionState("session-label", CONNECTED)}, H)
    assert dict(state.tags)[schema.TAG_ACCOUNT_LABEL] == "1"


def test_the_update_time_is_the_newest_of_any_of_the_accounts_points() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", 3 * H, unified_account_total_equity=1.0)])
    tracker.observe([detail("1", "USDT", 1 * H, equity=1.0)])  # a new key, but older
    (state,) = tracker.account_states({"1": SessionState("a", CONNECTED)}, 4 * H)
    assert state.fields[schema.STATE_SECONDS_SINCE_UPDATE] == 3600.0


def test_seconds_since_update_and_frame_by_value() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", 2 * H, unified_account_total_equity=1.0)])
    tracker.observe([assets("2", 2 * H, unified_account_total_equity=1.0)])
    sessions = {
        "1": SessionState("a", CONNECTED, 1.23456),
        "2": SessionState("b", CONNECTED, 0.0004),
    }
    points = tracker.account_states(sessions, 2 * H + 1500)
    first, second = state_of(points, "1"), state_of(points, "2")
    assert first.fields[schema.STATE_SECONDS_SINCE_UPDATE] == 1.5
    assert first.fields[schema.STATE_SECONDS_SINCE_FRAME] == 1.235
    assert second.fields[schema.STATE_SECONDS_SINCE_FRAME] == 0.0
    same = tracker.account_states(sessions, 2 * H)
    assert state_of(same, "1").fields[schema.STATE_SECONDS_SINCE_UPDATE] == 0.0


def test_retain_forgets_everything_of_an_account_that_left() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", 5 * H, unified_account_total_equity=1.0)])
    tracker.observe([detail("1", "USDT", 5 * H, equity=1.0)])
    tracker.retain([])
    sessions = {"1": SessionState("back", CONNECTED)}
    (state,) = tracker.account_states(sessions, 6 * H)
    fields: dict[str, FieldValue] = {schema.STATE_CONNECTED: 1, schema.STATE_SESSION: CONNECTED}
    assert dict(state.fields) == fields
    assert dict(state.tags)[schema.TAG_ACCOUNT_LABEL] == "back"
    # Back on the shard: its first points count even when older than the forgotten ones.
    tracker.observe([assets("1", 1 * H, unified_account_total_equity=7.0)])
    tracker.observe([detail("1", "USDT", 1 * H, equity=3.0)])
    points = tracker.totals(6 * H)
    assert fields_of(points, schema.BROKER_TOTALS)[schema.EQUITY] == 7.0
    assert fields_of(points, schema.CURRENCY_TOTALS, currency="USDT")[schema.DETAIL_EQUITY] == 3.0


def test_retain_of_an_account_with_only_currency_points() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([detail("1", "USDT", H, equity=1.0)])
    tracker.retain(["2"])
    assert [p.measurement for p in tracker.totals(2 * H)] == [schema.BROKER_TOTALS]


def test_retain_keeps_the_currencies_of_the_accounts_kept() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([detail("1", "USDT", H, equity=1.0), detail("2", "USDT", H, equity=2.0)])
    tracker.retain(["1"])
    usdt = fields_of(tracker.totals(2 * H), schema.CURRENCY_TOTALS, currency="USDT")
    assert (usdt[schema.DETAIL_EQUITY], usdt[schema.TOTALS_ACCOUNTS]) == (1.0, 1)


def test_a_renamed_account_is_written_with_its_new_label() -> None:
    # Each account's state tags are kept between intervals: a new label must replace them.
    tracker = TotalsTracker("host", "0/1")
    (before,) = tracker.account_states({"1": SessionState("desk-a", CONNECTED)}, H)
    (after,) = tracker.account_states({"1": SessionState("desk-b", CONNECTED)}, 2 * H)
    assert [dict(p.tags)[schema.TAG_ACCOUNT_LABEL] for p in (before, after)] == ["desk-a", "desk-b"]
    assert dict(after.tags)[schema.TAG_SHARD] == "0/1"


def test_an_older_point_does_not_rename_the_account() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.account_values("1", "new-label", 2 * H, {"e": "1"})
    tracker.account_values("1", "old-label", H, {"e": "2"})  # late: a replay, a snapshot
    (state,) = tracker.account_states({"1": SessionState("session", CONNECTED)}, 3 * H)
    assert dict(state.tags)[schema.TAG_ACCOUNT_LABEL] == "new-label"
    assert state.fields[schema.EQUITY] == 1.0


def test_accounts_that_left_take_their_cached_tags_with_them() -> None:
    tracker = TotalsTracker("host", "0/1")
    sessions = {a: SessionState(a, CONNECTED) for a in ("1", "2")}
    tracker.account_states(sessions, H)
    tracker.retain(["2"])
    assert list(tracker._tags_of) == ["2"]  # a bounded cache: only the shard's accounts
