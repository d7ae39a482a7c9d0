"""The totals tracker: exact sums of the last known values, whatever arrives when."""

from __future__ import annotations

from typing import Any

from collector.gate.protocol import ASSET_DETAIL, ASSETS, Update
from collector.points import schema
from collector.points.lineproto import FieldValue, FloatText, Point
from collector.points.normalize import Normalizer
from collector.points.totals import SessionState, TotalsTracker

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
