"""The totals tracker: exact sums of the last known values, whatever arrives when."""

from __future__ import annotations

from typing import Any

from collector.gate.protocol import ASSET_DETAIL, ASSETS, Update
from collector.points import modes, schema
from collector.points.book import AccountBook
from collector.points.lineproto import FieldValue, FloatText, Point
from collector.points.normalize import Normalizer
from collector.points.totals import SessionState, TotalsTracker, _short_keys

H = 3_600_000


def assets(account: str, time_ms: int, **fields: FieldValue) -> Point:
    tags = ((schema.TAG_ACCOUNT, account), (schema.TAG_ACCOUNT_LABEL, f"acct-{account}"))
    return Point(schema.ASSETS, tags, fields, time_ms)


def detail(account: str, currency: str, time_ms: int, **fields: FieldValue) -> Point:
    tags = (
        (schema.TAG_ACCOUNT, account),
        (schema.TAG_ACCOUNT_LABEL, f"acct-{account}"),
        (schema.TAG_CURRENCY, currency),
    )
    return Point(schema.ASSET_DETAIL, tags, fields, time_ms)


def fields_of(points: list[Point], measurement: str, **tags: str) -> dict[str, FieldValue]:
    (found,) = [
        p for p in points if p.measurement == measurement and tags.items() <= dict(p.tags).items()
    ]
    return dict(found.fields)


def test_broker_totals_sum_each_accounts_last_value() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", 0, unified_account_total_equity=FloatText("5000000.00"))])
    tracker.observe([assets("2", 10 * H, unified_account_total_equity=100.0)])
    tracker.observe([assets("2", 11 * H, unified_account_total_equity=200.0)])
    tracker.observe([assets("3", 11 * H, unified_account_total_liab=7.5)])
    totals = fields_of(tracker.totals(12 * H), schema.BROKER_TOTALS)
    assert totals[schema.EQUITY] == 5_000_200.0
    assert totals[schema.LIABILITIES] == 7.5
    assert totals[schema.TOTALS_ACCOUNTS] == 3


def test_a_late_older_point_does_not_undo_a_newer_value() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", 2 * H, unified_account_total_equity=2.0)])
    tracker.observe([assets("1", 1 * H, unified_account_total_equity=1.0)])  # a late snapshot
    assert fields_of(tracker.totals(3 * H), schema.BROKER_TOTALS)[schema.EQUITY] == 2.0


def test_a_partial_update_keeps_the_other_fields() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", 1, unified_account_total_equity=5.0, unified_account_total=9.0)])
    tracker.observe([assets("1", 2, unified_account_total_equity=6.0)])
    totals = fields_of(tracker.totals(3), schema.BROKER_TOTALS)
    assert (totals[schema.EQUITY], totals[schema.TOTAL]) == (6.0, 9.0)


def test_currency_totals_per_currency() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([detail("1", "USDT", 1, equity=10.0, total_liab=1.0)])
    tracker.observe([detail("2", "USDT", 2, equity=5.5), detail("2", "BTC", 2, equity=0.25)])
    points = tracker.totals(3)
    usdt = fields_of(points, schema.CURRENCY_TOTALS, currency="USDT")
    btc = fields_of(points, schema.CURRENCY_TOTALS, currency="BTC")
    assert (usdt[schema.DETAIL_EQUITY], usdt[schema.DETAIL_LIABILITIES]) == (15.5, 1.0)
    assert (usdt[schema.TOTALS_ACCOUNTS], btc[schema.TOTALS_ACCOUNTS]) == (2, 1)
    assert btc[schema.DETAIL_EQUITY] == 0.25


def test_accounts_that_left_the_shard_no_longer_count() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", 1, unified_account_total_equity=1.0)])
    tracker.observe([assets("2", 1, unified_account_total_equity=2.0)])
    tracker.observe([detail("2", "USDT", 1, equity=2.0)])
    tracker.retain(["1"])
    points = tracker.totals(2)
    assert fields_of(points, schema.BROKER_TOTALS)[schema.EQUITY] == 1.0
    assert [p for p in points if p.measurement == schema.CURRENCY_TOTALS] == []


def test_account_state_tells_stale_from_broken() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", 0, total_maintenance_margin_rate=1.045)])
    sessions = {
        "1": SessionState("acct-1", schema.SESSION_CONNECTED, 3.0),
        "2": SessionState("acct-2", schema.SESSION_DISCONNECTED),
        "3": SessionState("3", schema.SESSION_OVER_CAPACITY),
    }
    points = tracker.account_states(sessions, 6 * H)
    quiet = fields_of(points, schema.ACCOUNT_STATE, account="1")
    assert quiet[schema.STATE_SECONDS_SINCE_UPDATE] == 6 * 3600
    assert quiet[schema.MAINTENANCE_MARGIN_RATE] == 1.045
    assert (quiet[schema.STATE_CONNECTED], quiet[schema.STATE_SECONDS_SINCE_FRAME]) == (1, 3.0)
    broken = fields_of(points, schema.ACCOUNT_STATE, account="2")
    assert broken == {schema.STATE_CONNECTED: 0, schema.STATE_SESSION: schema.SESSION_DISCONNECTED}
    over = fields_of(points, schema.ACCOUNT_STATE, account="3", account_label="3")
    assert over[schema.STATE_SESSION] == schema.SESSION_OVER_CAPACITY


def test_non_numbers_are_not_summed() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.observe([assets("1", 1, unified_account_total_equity="n/a", u=5)])
    assert fields_of(tracker.totals(2), schema.BROKER_TOTALS)[schema.EQUITY] == 0


def test_totals_are_floats_even_before_any_data() -> None:
    """InfluxDB fixes a field's type at its first write: an int 0 would refuse later floats."""
    (broker,) = TotalsTracker("host", "0/1").totals(1)
    assert all(type(broker.fields[name]) is float for name in schema.BROKER_TOTAL_FIELDS)
    assert type(broker.fields[schema.TOTALS_ACCOUNTS]) is int


# -- pushes: the hot path tells the tracker what it wrote (no line is parsed back) --------


def _push(
    tracker: TotalsTracker, normalizer: Normalizer, channel: str, result: dict[str, Any]
) -> None:
    normalizer.normalize(Update(channel, [result], None, result.pop("ms")))


def test_pushed_values_reach_the_totals_as_written() -> None:
    tracker = TotalsTracker("host", "0/1")
    one = Normalizer(101, "acct-1", observer=tracker)
    two = Normalizer(102, "acct-2", observer=tracker)
    _push(tracker, one, ASSETS, {"u": 1, "e": "100.50", "l": "2", "R": "3.5", "ms": 10})
    _push(tracker, two, ASSETS, {"u": 1, "e": "0.25", "T": "9", "ms": 10})
    _push(tracker, one, ASSETS, {"u": 2, "e": "200.50", "ms": 20})  # a partial update
    _push(tracker, one, ASSET_DETAIL, {"u": 3, "dts": {"BTC": {"a": "1.5", "f": "1,5"}}, "ms": 30})
    _push(tracker, two, ASSET_DETAIL, {"u": 4, "dts": {"BTC": {"a": 2, "e": "nan"}}, "ms": 30})
    points = tracker.totals(40)
    broker = fields_of(points, schema.BROKER_TOTALS)
    assert broker[schema.EQUITY] == 200.75
    assert (broker[schema.LIABILITIES], broker[schema.TOTAL], broker[schema.TOTALS_ACCOUNTS]) == (
        2.0,
        9.0,
        2,
    )
    btc = fields_of(points, schema.CURRENCY_TOTALS, currency="BTC")
    # the bad values ("1,5", "nan") were neither written nor counted
    assert (btc[schema.DETAIL_AVAILABLE], btc[schema.DETAIL_FREEZE], btc[schema.DETAIL_EQUITY]) == (
        3.5,
        0.0,
        0.0,
    )
    sessions = {"101": SessionState("acct-1", schema.SESSION_CONNECTED)}
    (state,) = tracker.account_states(sessions, 40)
    assert state.fields[schema.MAINTENANCE_MARGIN_RATE] == 3.5
    assert state.fields[schema.STATE_SECONDS_SINCE_UPDATE] == 0.01  # the detail push at 30 ms
    assert dict(state.tags)[schema.TAG_ACCOUNT_LABEL] == "acct-1"


def test_a_push_older_than_a_snapshot_does_not_undo_it_and_currencies_past_the_cap_stay_out() -> (
    None
):
    tracker = TotalsTracker("host", "0/1")
    normalizer = Normalizer(101, "acct-1", max_currencies=1, observer=tracker)
    tracker.observe([assets("101", 50, unified_account_total_equity=FloatText("7"))])
    _push(tracker, normalizer, ASSETS, {"u": 1, "e": "1", "ms": 40})  # late: kept out
    _push(
        tracker,
        normalizer,
        ASSET_DETAIL,
        {"u": 2, "dts": {"BTC": {"a": "1"}, "ETH": {"a": "5"}}, "ms": 60},
    )
    points = tracker.totals(70)
    assert fields_of(points, schema.BROKER_TOTALS)[schema.EQUITY] == 7.0
    assert [dict(p.tags)[schema.TAG_CURRENCY] for p in points[1:]] == ["BTC"]  # ETH over the cap


# -- Totals rules found by mutation testing (tests/MUTATION.md): times, labels, forgetting

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
    assert tracker.accounts_held() == {"2"}  # a bounded cache: only the shard's accounts


# -- The totals' Observer methods (the hot path's checked values), rules a mutation would ----------


def test_short_keys_are_the_gate_keys_of_the_wanted_long_names_in_order() -> None:
    names = {"a": "available", "f": "freeze", "e": "equity"}
    assert _short_keys(names, ("equity", "available")) == (("a", "available"), ("e", "equity"))
    assert _short_keys(names, ()) == ()


def test_an_account_push_alone_labels_and_dates_its_account() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.account_values("101", "desk", 10 * H, {"e": "7", "R": "2.5"})
    sessions = {"101": SessionState("session label", schema.SESSION_CONNECTED)}
    (state,) = tracker.account_states(sessions, 11 * H)
    assert dict(state.tags)[schema.TAG_ACCOUNT_LABEL] == "desk"
    assert state.fields[schema.STATE_SECONDS_SINCE_UPDATE] == 3600.0
    assert state.fields[schema.MAINTENANCE_MARGIN_RATE] == 2.5


def test_each_pushed_currency_keeps_its_own_time_order() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.currency_values("101", "desk", "BTC", 5 * H, {"e": "1"})
    tracker.currency_values("101", "desk", "ETH", 1 * H, {"e": "2"})  # older, other currency
    tracker.currency_values("102", "desk", "BTC", 1 * H, {"e": "4"})  # older, other account
    tracker.currency_values("101", "desk", "BTC", 2 * H, {"e": "100"})  # older: kept out
    points = tracker.totals(6 * H)
    btc = fields_of(points, schema.CURRENCY_TOTALS, currency="BTC")
    eth = fields_of(points, schema.CURRENCY_TOTALS, currency="ETH")
    assert (btc[schema.DETAIL_EQUITY], btc[schema.TOTALS_ACCOUNTS]) == (5.0, 2)
    assert (eth[schema.DETAIL_EQUITY], eth[schema.TOTALS_ACCOUNTS]) == (2.0, 1)


def test_an_account_push_older_than_its_last_is_kept_out() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.account_values("101", "desk", 5 * H, {"e": "1"})
    tracker.account_values("102", "desk", 1 * H, {"e": "2"})  # older, other account: kept
    tracker.account_values("101", "desk", 2 * H, {"e": "100"})  # older: kept out
    tracker.currency_values("101", "desk", "BTC", 1 * H, {"e": "3"})  # its own order
    points = tracker.totals(6 * H)
    assert fields_of(points, schema.BROKER_TOTALS)[schema.EQUITY] == 3.0
    assert fields_of(points, schema.CURRENCY_TOTALS, currency="BTC")[schema.DETAIL_EQUITY] == 3.0


def test_at_the_same_time_the_later_confirmation_names_the_account() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.account_values("1", "old-label", H, {"e": "1"})
    tracker.currency_values("1", "new-label", "BTC", H, {"e": "2"})
    (state,) = tracker.account_states({"1": SessionState("session", CONNECTED)}, 2 * H)
    assert dict(state.tags)[schema.TAG_ACCOUNT_LABEL] == "new-label"


def test_a_new_label_equal_to_the_instance_name_is_written_too() -> None:
    tracker = TotalsTracker("host", "0/1")
    tracker.account_states({"1": SessionState("desk", CONNECTED)}, H)
    (after,) = tracker.account_states({"1": SessionState("host", CONNECTED)}, 2 * H)
    assert dict(after.tags)[schema.TAG_ACCOUNT_LABEL] == "host"


# -- with the account book: modes ---------------------------------------------------------


def test_retain_forgets_the_accounts_that_left_in_the_book_too() -> None:
    book = AccountBook()
    book.set_mode(1, modes.MULTI_CURRENCY)
    book.set_mode(2, modes.PORTFOLIO)
    tracker = TotalsTracker("host", "0/1", book)
    tracker.retain(["2", "desk"])  # an id that is not a number has nothing in the book
    assert (book.mode(1), book.mode(2)) == (None, modes.PORTFOLIO)


def test_retain_forgets_the_mode_of_an_account_that_never_sent_values() -> None:
    book = AccountBook()
    book.set_mode(1, modes.PORTFOLIO)
    book.set_mode(2, modes.MULTI_CURRENCY)
    tracker = TotalsTracker("host", "0/1", book)
    tracker.account_values("2", "b", H, {"e": "1"})
    tracker.account_states({a: SessionState(a, CONNECTED) for a in ("1", "2")}, H)
    assert tracker.accounts_held() == {"1", "2"}
    tracker.retain([])
    assert tracker.accounts_held() == set()


def test_a_mode_change_forgets_the_currency_values_of_that_account_that_no_longer_apply() -> None:
    book = AccountBook()
    book.set_mode(1, modes.MULTI_CURRENCY)
    tracker = TotalsTracker("host", "0/1", book)
    tracker.currency_values("1", "a", "USDT", H, {"tl": "5", "e": "1"})
    tracker.currency_values("2", "b", "USDT", H, {"tl": "7", "e": "2"})  # mode unknown
    sessions = {a: SessionState(a, CONNECTED) for a in ("1", "2")}
    tracker.account_states(sessions, H)  # multi-currency: account 1's liabilities apply
    usdt = fields_of(tracker.totals(H), schema.CURRENCY_TOTALS, currency="USDT")
    assert (usdt[schema.DETAIL_LIABILITIES], usdt[schema.DETAIL_EQUITY]) == (12.0, 3.0)
    book.set_mode(1, modes.SINGLE_CURRENCY)
    tracker.account_states(sessions, 2 * H)
    usdt = fields_of(tracker.totals(2 * H), schema.CURRENCY_TOTALS, currency="USDT")
    assert (usdt[schema.DETAIL_LIABILITIES], usdt[schema.DETAIL_EQUITY]) == (7.0, 3.0)


def test_values_pushed_after_the_mode_was_noted_stay_and_the_modes_rate_counts() -> None:
    book = AccountBook()
    book.set_mode(1, modes.SINGLE_CURRENCY)
    tracker = TotalsTracker("host", "0/1", book)
    sessions = {"1": SessionState("a", CONNECTED)}
    tracker.account_states(sessions, H)
    # Gate sent numbers: written whatever the mode says, so counted too
    tracker.account_values("1", "a", H, {"R": "1.3"})
    tracker.currency_values("1", "a", "USDT", H, {"tl": "5", "mmr": "2.5"})
    (state,) = tracker.account_states(sessions, 2 * H)
    assert state.fields[schema.MAINTENANCE_MARGIN_RATE] == 1.3
    assert state.fields[schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE] == 2.5  # USDT's, as the mode
    usdt = fields_of(tracker.totals(2 * H), schema.CURRENCY_TOTALS, currency="USDT")
    assert usdt[schema.DETAIL_LIABILITIES] == 5.0
