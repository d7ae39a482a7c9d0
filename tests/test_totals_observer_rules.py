"""The totals' Observer methods (the hot path's checked values), rules a mutation would
break unseen (tests/MUTATION.md): each account and currency keeps its own time order,
a push alone labels and dates its account, the short keys wanted."""

from __future__ import annotations

from collector.points import schema
from collector.points.totals import SessionState, TotalsTracker, _short_keys
from tests.test_totals import H, fields_of


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
