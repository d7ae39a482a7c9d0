"""Normalisation to the data contract, and every rule of the sequence check on ``u``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.gate.protocol import ASSET_DETAIL, ASSETS, Update
from collector.gate.sequence import Gap, Sequence, SequenceTracker
from collector.points import modes, schema
from collector.points.lineproto import FloatText, encode
from collector.points.normalize import Normalizer
from tests.helpers import points_of

ACCOUNT = 100001


def known_mode(normalizer: Normalizer, mode: str = modes.MULTI_CURRENCY) -> Normalizer:
    """A normalizer of an account whose snapshot said its mode (so a 0 means 0)."""
    normalizer.facts.mode = mode
    return normalizer


def update(
    channel: str,
    *results: dict[str, Any],
    time_ms: int | None = 1716796362915,
    time: int | None = 1716796362,
) -> Update:
    return Update(channel, list(results), time, time_ms)


def detail(u: int, **dts: dict[str, Any]) -> Update:
    return update(ASSET_DETAIL, {"u": u, "t": 1716796364, "dts": dts})


# -- the data contract ---------------------------------------------------------


def test_seed_assets_update_becomes_one_point_with_long_names() -> None:
    result = known_mode(Normalizer(ACCOUNT, "desk-a")).normalize(
        update(
            ASSETS,
            {
                "u": 9008,
                "t": 1700625194,
                "r": "18.56",
                "R": "20.10",
                "b": "-1005719.51",
                "e": "-617985.29",
                "l": "1293939.74",
                "T": "675222.27",
                "a": "-1432719.62",
                "c": "12",
            },
        )
    )
    (point,) = points_of(result)
    assert point.measurement == "gate_unified_assets"
    assert dict(point.tags) == {"account": "100001", "account_label": "desk-a"}
    assert point.fields == {
        "total_initial_margin_rate": "18.56",
        "total_maintenance_margin_rate": "20.10",
        "total_margin_balance": "-1005719.51",
        "unified_account_total_equity": "-617985.29",
        "unified_account_total_liab": "1293939.74",
        "unified_account_total": "675222.27",
        "total_available_margin": "-1432719.62",
        "u": 9008,
        "refresh_time": 1700625194,
    }
    assert all(
        type(v) is FloatText for k, v in point.fields.items() if k not in ("u", "refresh_time")
    )
    assert point.time_ms == 1716796362915


def test_seed_asset_detail_becomes_a_point_per_currency() -> None:
    result = known_mode(Normalizer(ACCOUNT, "desk-a")).normalize(
        detail(
            11027732,
            BTC={
                "a": "1086390.949548",
                "f": "0.000000",
                "e": "1086390.949548",
                "tl": "0.00",
                "b": "1086390.949548",
            },
            USDT={
                "a": "5",
                "cb": "1",
                "mb": "2",
                "im": "3",
                "mm": "4",
                "imr": "0.1",
                "mmr": "0.2",
                "am": "6",
                "iam": "7",
                "zz": "8",
            },
        )
    )
    btc, usdt = points_of(result)
    assert dict(btc.tags)["currency"] == "BTC"
    assert btc.fields == {
        "available": "1086390.949548",
        "freeze": "0.000000",
        "equity": "1086390.949548",
        "total_liab": "0.00",
        "balance": "1086390.949548",
        "u": 11027732,
        "refresh_time": 1716796364,
    }
    assert set(usdt.fields) == {
        "available",
        "cross_balance",
        "margin_balance",
        "initial_margin",
        "maintenance_margin",
        "initial_margin_rate",
        "maintenance_margin_rate",
        "available_margin",
        "iso_available_margin",
        "zz",
        "u",
        "refresh_time",
    }
    assert encode(btc) == (
        "gate_unified_asset_detail,account=100001,account_label=desk-a,currency=BTC "
        "available=1086390.949548,freeze=0.000000,equity=1086390.949548,total_liab=0.00,"
        "balance=1086390.949548,u=11027732i,refresh_time=1716796364i 1716796362915"
    )


def test_a_normalizer_alone_keeps_the_accounts_facts_in_a_book_of_its_own() -> None:
    facts = Normalizer(ACCOUNT, "x").facts
    assert (facts.account, facts.book.known(ACCOUNT)) == (ACCOUNT, facts)


def test_partial_updates_write_only_what_came() -> None:
    result = Normalizer(ACCOUNT, "x").normalize(detail(5, ETH={"a": "1.5"}))
    assert points_of(result)[0].fields == {"available": "1.5", "u": 5, "refresh_time": 1716796364}


def test_a_bad_field_is_dropped_and_counted_the_rest_kept() -> None:
    result = Normalizer(ACCOUNT, "x").normalize(
        detail(
            5,
            ETH={
                "a": "1.5",
                "f": "NaN",
                "e": "abc",
                "b": None,
                "tl": 2,
                "im": 1.25,
                "mm": float("inf"),
            },
            BAD="not an object",
        )
    )
    (point,) = points_of(result)
    assert point.fields == {
        "available": "1.5",
        "total_liab": "2",  # JSON numbers written as the float text the encoder makes
        "initial_margin": "1.25",
        "u": 5,
        "refresh_time": 1716796364,
    }
    assert result.invalid_fields == 5


def test_timestamp_falls_back_from_time_ms_to_t_to_time() -> None:
    norm = Normalizer(ACCOUNT, "x")
    with_t = norm.normalize(update(ASSETS, {"u": 1, "t": 1700000000, "r": "1"}, time_ms=None))
    assert points_of(with_t)[0].time_ms == 1700000000000
    with_time = norm.normalize(update(ASSETS, {"u": 2, "r": "1"}, time_ms=None, time=1600000000))
    assert points_of(with_time)[0].time_ms == 1600000000000
    none = norm.normalize(update(ASSETS, {"u": 3, "r": "1"}, time_ms=None, time=None))
    assert points_of(none) == [] and none.rejected is not None


def test_array_results_each_become_points() -> None:
    result = Normalizer(ACCOUNT, "x").normalize(
        update(ASSETS, {"u": 1, "r": "1"}, {"u": 2, "r": "2"})
    )
    assert [p.fields["u"] for p in points_of(result)] == [1, 2]


# -- u: a counter ---------------------------------------------------------------


def test_in_order_u_is_in_order() -> None:
    tracker = SequenceTracker(ACCOUNT)
    assert tracker.observe(ASSETS, 9008) == (Sequence.FIRST, None)
    assert tracker.observe(ASSETS, 9009) == (Sequence.IN_ORDER, None)
    assert tracker.observe(ASSETS, 9010) == (Sequence.IN_ORDER, None)


def test_a_skip_is_a_gap_with_expected_received_missed() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, 10)
    assert tracker.observe(ASSETS, 14) == (Sequence.GAP, Gap(ASSETS, "sequence", 11, 14, 3))
    assert tracker.observe(ASSETS, 15) == (Sequence.IN_ORDER, None)


@pytest.mark.parametrize("u", [10, 9, 1])
def test_repeat_or_restart_is_not_a_gap(u: int) -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, 10)
    assert tracker.observe(ASSETS, u) == (Sequence.REPEAT, None)
    assert tracker.observe(ASSETS, u + 1) == (Sequence.IN_ORDER, None)


def test_channels_are_tracked_apart() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, 10)
    tracker.observe(ASSET_DETAIL, 500)
    assert tracker.observe(ASSETS, 11)[0] is Sequence.IN_ORDER
    assert tracker.observe(ASSET_DETAIL, 501)[0] is Sequence.IN_ORDER


def test_a_reconnect_is_recorded_as_a_possible_gap() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, 10)
    tracker.reconnected()
    assert tracker.observe(ASSETS, 11) == (Sequence.IN_ORDER, Gap(ASSETS, "reconnect", 11, 11, 0))
    tracker.reconnected()
    assert tracker.observe(ASSETS, 20) == (Sequence.GAP, Gap(ASSETS, "reconnect", 12, 20, 8))
    tracker.reconnected()
    assert tracker.observe(ASSETS, 3) == (Sequence.IN_ORDER, Gap(ASSETS, "reconnect", 21, 3, -1))


def test_gap_points_and_resync_come_out_of_the_normaliser() -> None:
    norm = Normalizer(ACCOUNT, "x")
    norm.normalize(detail(10, BTC={"a": "1"}))
    result = norm.normalize(detail(13, BTC={"a": "2"}))
    assert result.resync
    gap_point = points_of(result)[0]
    assert gap_point.measurement == "gate_sequence_gap"
    assert dict(gap_point.tags) == {
        "account": "100001",
        "channel": ASSET_DETAIL,
        "reason": "sequence",
    }
    assert gap_point.fields == {"expected": 11, "received": 13, "missed": 2}
    assert points_of(result)[1].fields["available"] == "2"  # the update itself is kept


def test_a_reconnect_gap_does_not_resync() -> None:
    norm = Normalizer(ACCOUNT, "x")
    norm.normalize(detail(10, BTC={"a": "1"}))
    norm.reconnected()
    result = norm.normalize(detail(12, BTC={"a": "2"}))
    assert not result.resync
    assert dict(points_of(result)[0].tags)["reason"] == "reconnect"


def test_after_a_reconnect_only_the_first_update_carries_a_gap_point() -> None:
    # Issue 10's "reconnect flag never cleared": a gap point on every later update.
    norm = Normalizer(ACCOUNT, "x")
    norm.normalize(detail(10, BTC={"a": "1"}))
    norm.reconnected()
    first = [p.measurement for p in points_of(norm.normalize(detail(11, BTC={"a": "2"})))]
    later = [p.measurement for p in points_of(norm.normalize(detail(12, BTC={"a": "3"})))]
    assert first == ["gate_sequence_gap", "gate_unified_asset_detail"]
    assert later == ["gate_unified_asset_detail"]


# -- u: the account's identity ---------------------------------------------------


def test_u_equal_to_the_account_is_identity_without_sequence_checks() -> None:
    tracker = SequenceTracker(ACCOUNT)
    for _ in range(3):
        assert tracker.observe(ASSETS, ACCOUNT) == (Sequence.IDENTITY, None)


def test_identity_then_another_account_is_a_mismatch() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, ACCOUNT)
    assert tracker.observe(ASSETS, 100002) == (Sequence.MISMATCH, None)


def test_another_known_account_from_the_start_is_a_mismatch() -> None:
    tracker = SequenceTracker(ACCOUNT, other_accounts={100002, 100003})
    assert tracker.observe(ASSETS, 100002) == (Sequence.MISMATCH, None)


def test_a_counter_that_passes_another_accounts_id_is_still_a_counter() -> None:
    tracker = SequenceTracker(ACCOUNT, other_accounts={100002})
    tracker.observe(ASSETS, 100000)
    tracker.observe(ASSETS, 100001 + 0)  # coincides with our own id: identity
    # A channel that counts up through other ids is not rejected once it counted.
    tracker2 = SequenceTracker(ACCOUNT, other_accounts={100005})
    tracker2.observe(ASSETS, 100003)
    tracker2.observe(ASSETS, 100004)
    assert tracker2.observe(ASSETS, 100005) == (Sequence.IN_ORDER, None)


def test_a_mismatch_rejects_the_frame() -> None:
    norm = Normalizer(ACCOUNT, "x", other_accounts={100002})
    result = norm.normalize(detail(100002, BTC={"a": "1"}))
    assert points_of(result) == []
    assert result.rejected is not None and "100002" in result.rejected


def test_identity_reconnect_is_recorded_with_unknowns() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, ACCOUNT)
    tracker.reconnected()
    assert tracker.observe(ASSETS, ACCOUNT) == (
        Sequence.IDENTITY,
        Gap(ASSETS, "reconnect", -1, -1, -1),
    )


@pytest.mark.parametrize("u_mode", ["counter", "identity"])
def test_no_update_is_ever_lost_because_of_u(u_mode: str) -> None:
    norm = Normalizer(ACCOUNT, "x")
    counter_values = [10, 11, 15, 15, 3, 4, 100, 99]
    written = 0
    for i, u in enumerate(counter_values):
        value = ACCOUNT if u_mode == "identity" else u
        result = norm.normalize(detail(value, BTC={"a": str(i)}))
        written += sum(1 for p in points_of(result) if p.measurement == "gate_unified_asset_detail")
        if i == 4:
            norm.reconnected()
    assert written == len(counter_values)


def test_missing_or_odd_u_is_unknown_and_still_written() -> None:
    norm = Normalizer(ACCOUNT, "x")
    for u in (None, "12", 1.5):
        result = norm.normalize(update(ASSETS, {"u": u, "r": "1"}))
        assert len(points_of(result)) == 1
        assert "u" not in points_of(result)[0].fields


# -- properties ------------------------------------------------------------------

# Keys without a backslash: line protocol does not escape it in keys (nor does
# influxdb_client), so "\\=" in a key cannot be read back unambiguously by
# tests/lines.py (hypothesis found '\\="'); Gate's keys are short letters.
_keys = st.text(st.characters(blacklist_characters="\\"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=3),
    max_leaves=15,
)


@settings(max_examples=400, deadline=None)
@given(
    channel=st.sampled_from([ASSETS, ASSET_DETAIL]),
    results=st.lists(
        st.dictionaries(st.sampled_from(["u", "t", "dts", "a", "r", "zz"]), json_values),
        min_size=1,
        max_size=3,
    ),
    time_ms=st.none() | st.integers(min_value=0, max_value=2**50),
)
def test_any_field_values_normalise_without_raising(
    channel: str, results: list[dict[str, Any]], time_ms: int | None
) -> None:
    if channel == ASSET_DETAIL:
        results = [r for r in results if isinstance(r.get("dts", {}), dict)] or [{}]
    norm = Normalizer(ACCOUNT, "x", other_accounts={100002})
    out = norm.normalize(Update(channel, results, 1, time_ms))
    measurements = {channel_measurement[channel], "gate_sequence_gap"}
    for point in points_of(out):
        assert point.measurement in measurements
        assert encode(point) is not None  # every point has a writable field
        assert all(_finite_number(value) for value in point.fields.values())
        if time_ms is not None:
            assert point.time_ms == time_ms  # the frame's time_ms wins


channel_measurement = {ASSETS: "gate_unified_assets", ASSET_DETAIL: "gate_unified_asset_detail"}


def _finite_number(value: object) -> bool:
    if type(value) is FloatText or type(value) is int:
        return True
    return type(value) is float and value - value == 0


def test_the_shared_set_of_all_accounts_may_include_this_one() -> None:
    tracker = SequenceTracker(ACCOUNT, other_accounts={ACCOUNT, 100002})
    assert tracker.observe(ASSETS, ACCOUNT) == (Sequence.IDENTITY, None)
    assert tracker.observe(ASSETS, 100002) == (Sequence.MISMATCH, None)


# -- one value at a time -------------------------------------------------------------


@pytest.mark.parametrize("odd", ["1,5", ",", "1,", ",5", "1,2,3"])
def test_a_value_with_a_comma_drops_that_field_only(odd: str) -> None:
    # Joined with commas for the fast check, "1,5" used to pass as two numbers and
    # the line "available=1,5,freeze=2" was refused by InfluxDB with everything in it.
    result = known_mode(Normalizer(ACCOUNT, "x")).normalize(
        detail(5, USDT={"a": odd, "f": "2", "e": "3.25", "tl": "0", "b": "3.25"})
    )
    (point,) = points_of(result)
    assert point.fields == {
        "freeze": "2",
        "equity": "3.25",
        "total_liab": "0",
        "balance": "3.25",
        "u": 5,
        "refresh_time": 1716796364,
    }
    assert result.invalid_fields == 1
    line = encode(point)
    assert line is not None and "available=" not in line


def test_a_comma_in_an_assets_value_keeps_the_other_totals() -> None:
    values = {"r": "18.56", "R": "1,5", "e": "-617985.29", "T": "675222.27"}
    result = Normalizer(ACCOUNT, "x").normalize(update(ASSETS, {"u": 9008, **values}))
    (point,) = points_of(result)
    assert "total_maintenance_margin_rate" not in point.fields
    assert point.fields["unified_account_total_equity"] == "-617985.29"
    assert point.fields["total_initial_margin_rate"] == "18.56"
    assert result.invalid_fields == 1


# -- Normalisation edge rules that a mutation of normalize.py would break unseen ----------

TIME_MS = 1716796362915


def detail_of(u: int, dts: dict[str, Any]) -> Update:
    return Update(ASSET_DETAIL, [{"u": u, "t": 1716796364, "dts": dts}], None, TIME_MS)


def test_a_bad_string_among_decimal_strings_is_dropped_and_counted() -> None:
    out = Normalizer(ACCOUNT, "x").normalize(detail_of(1, {"BTC": {"a": "1.5", "f": "nan"}}))
    (point,) = points_of(out)
    assert point.fields == {"available": "1.5", "u": 1, "refresh_time": 1716796364}
    assert type(point.fields["available"]) is FloatText
    assert out.invalid_fields == 1


def test_a_currency_that_is_not_an_object_does_not_stop_the_others() -> None:
    out = Normalizer(ACCOUNT, "x").normalize(
        detail_of(1, {"BAD": 5, "BTC": {"a": "1"}, "ALSO": [], "ETH": {"a": "2"}})
    )
    assert [dict(p.tags)[schema.TAG_CURRENCY] for p in points_of(out)] == ["BTC", "ETH"]
    assert out.invalid_fields == 2


def test_a_currency_keeps_its_own_tags_each_time() -> None:
    norm = Normalizer(ACCOUNT, "desk")
    first = norm.normalize(detail_of(1, {"BTC": {"a": "1"}, "ETH": {"a": "2"}}))
    second = norm.normalize(detail_of(2, {"ETH": {"a": "3"}, "BTC": {"a": "4"}}))
    tags = [dict(p.tags) for p in points_of(first) + points_of(second)]
    assert [t[schema.TAG_CURRENCY] for t in tags] == ["BTC", "ETH", "ETH", "BTC"]
    assert all(
        t[schema.TAG_ACCOUNT] == "100001" and t[schema.TAG_ACCOUNT_LABEL] == "desk" for t in tags
    )


def test_a_gap_point_has_the_updates_time() -> None:
    norm = Normalizer(ACCOUNT, "x")
    norm.normalize(detail_of(10, {"BTC": {"a": "1"}}))
    out = norm.normalize(detail_of(13, {"BTC": {"a": "2"}}))
    gap, value = points_of(out)
    assert gap.measurement == schema.SEQUENCE_GAP and gap.time_ms == TIME_MS
    assert value.time_ms == TIME_MS


def test_assets_values_that_are_numbers_not_strings_are_kept() -> None:
    result = {"u": 5, "t": 7, "r": 1.5, "e": 2, "b": "3", "c": "9", "zz": "1"}
    out = Normalizer(ACCOUNT, "x").normalize(Update(ASSETS, [result], None, TIME_MS))
    (point,) = points_of(out)
    assert point.fields == {
        schema.INITIAL_MARGIN_RATE: "1.5",  # JSON numbers as the encoder's float text
        schema.EQUITY: "2",
        schema.MARGIN_BALANCE: "3",
        "zz": "1",
        "u": 5,
        "refresh_time": 7,
    }


def test_u_equal_to_the_account_is_its_identity_and_another_account_is_rejected() -> None:
    norm = Normalizer(ACCOUNT, "x")
    for _ in range(2):
        out = norm.normalize(detail_of(ACCOUNT, {"BTC": {"a": "1"}}))
        assert (out.gaps, out.rejected, len(points_of(out))) == ([], None, 1)
    out = norm.normalize(detail_of(ACCOUNT + 1, {"BTC": {"a": "1"}}))
    assert points_of(out) == []
    assert out.rejected == (
        "u=100002 on unified.asset_detail is not account 100001: the key belongs to another account"
    )


def test_an_update_without_any_time_is_rejected_with_the_reason() -> None:
    update = Update(ASSETS, [{"u": 1, "r": "1"}], None, None)
    out = Normalizer(ACCOUNT, "x").normalize(update)
    assert (points_of(out), out.rejected) == ([], "no time_ms, t or time to stamp the point with")


def test_a_gap_is_reported_with_its_point() -> None:
    norm = Normalizer(ACCOUNT, "x")
    norm.normalize(detail_of(10, {"BTC": {"a": "1"}}))
    out = norm.normalize(detail_of(13, {"BTC": {"a": "2"}}))
    assert out.gaps == [Gap(ASSET_DETAIL, "sequence", 11, 13, 2)]
    assert out.resync is True  # a gap asks for a REST snapshot, not a resubscribe
    assert norm.normalize(detail_of(14, {"BTC": {"a": "3"}})).resync is False


def test_new_currencies_past_the_cap_are_dropped_and_counted_the_known_ones_kept() -> None:
    normalizer = Normalizer(7, "seven", max_currencies=2)
    first = normalizer.normalize(
        Update(
            ASSET_DETAIL,
            [{"u": 7, "t": 1, "dts": {"BTC": {"a": "1"}, "ETH": {"a": "2"}, "X1": {"a": "3"}}}],
            None,
            1000,
        )
    )
    assert [dict(p.tags)["currency"] for p in points_of(first)] == ["BTC", "ETH"]
    assert first.over_cap == 1
    later = normalizer.normalize(
        Update(
            ASSET_DETAIL,
            [{"u": 7, "t": 2, "dts": {"X2": {"a": "4"}, "ETH": {"a": "5"}}}],
            None,
            2000,
        )
    )
    assert [(dict(p.tags)["currency"], p.fields["available"]) for p in points_of(later)] == [
        ("ETH", "5")
    ]
    assert later.over_cap == 1


# -- Normalisation rules over several results in one update (tests/MUTATION.md, hot path):


def test_invalid_fields_add_up_over_the_results_of_one_update() -> None:
    assets = Update(ASSETS, [{"u": 1, "e": "x"}, {"u": 2, "e": "1", "l": "nan"}], None, TIME_MS)
    out = Normalizer(ACCOUNT, "x").normalize(assets)
    assert (out.invalid_fields, len(out.lines)) == (2, 1)
    detail = Update(
        ASSET_DETAIL,
        [{"u": 1, "dts": {"BTC": {"a": "x"}}}, {"u": 2, "dts": {"BTC": {"a": "1", "f": "y"}}}],
        None,
        TIME_MS,
    )
    out = Normalizer(ACCOUNT, "x").normalize(detail)
    assert (out.invalid_fields, len(out.lines)) == (2, 1)


def test_currencies_over_the_cap_add_up_over_the_results_of_one_update() -> None:
    detail = Update(
        ASSET_DETAIL,
        [{"u": 1, "dts": {"A": {"a": "1"}, "B": {"a": "1"}}}, {"u": 2, "dts": {"C": {"a": "1"}}}],
        None,
        TIME_MS,
    )
    out = Normalizer(ACCOUNT, "x", max_currencies=1).normalize(detail)
    assert (out.over_cap, len(out.lines)) == (2, 1)


def test_records_without_gaps_are_the_lines_themselves() -> None:
    out = Normalizer(ACCOUNT, "x").normalize(Update(ASSETS, [{"u": 1, "e": "1"}], None, TIME_MS))
    assert out.gap_points == [] and out.records() is out.lines  # no copy per update


def test_the_cap_is_kept_for_the_sessions_log_line() -> None:
    assert Normalizer(ACCOUNT, "x", max_currencies=3).max_currencies == 3  # session_updates
