"""Normalisation edge rules that a mutation of normalize.py would break unseen.

The contract itself is pinned in ``tests/test_normalize.py``; here: a bad string
among good ones on the fast path, a bad currency among good ones, gap points
stamped with the update's time.
"""

from __future__ import annotations

from typing import Any

from collector.gate.protocol import ASSET_DETAIL, ASSETS, Update
from collector.gate.sequence import Gap
from collector.points import schema
from collector.points.lineproto import FloatText
from collector.points.normalize import Normalizer
from tests.lines import points_of

ACCOUNT = 100001
TIME_MS = 1716796362915


def detail(u: int, dts: dict[str, Any]) -> Update:
    return Update(ASSET_DETAIL, [{"u": u, "t": 1716796364, "dts": dts}], None, TIME_MS)


def test_a_bad_string_among_decimal_strings_is_dropped_and_counted() -> None:
    out = Normalizer(ACCOUNT, "x").normalize(detail(1, {"BTC": {"a": "1.5", "f": "nan"}}))
    (point,) = points_of(out)
    assert point.fields == {"available": "1.5", "u": 1, "refresh_time": 1716796364}
    assert type(point.fields["available"]) is FloatText
    assert out.invalid_fields == 1


def test_a_currency_that_is_not_an_object_does_not_stop_the_others() -> None:
    out = Normalizer(ACCOUNT, "x").normalize(
        detail(1, {"BAD": 5, "BTC": {"a": "1"}, "ALSO": [], "ETH": {"a": "2"}})
    )
    assert [dict(p.tags)[schema.TAG_CURRENCY] for p in points_of(out)] == ["BTC", "ETH"]
    assert out.invalid_fields == 2


def test_a_currency_keeps_its_own_tags_each_time() -> None:
    norm = Normalizer(ACCOUNT, "desk")
    first = norm.normalize(detail(1, {"BTC": {"a": "1"}, "ETH": {"a": "2"}}))
    second = norm.normalize(detail(2, {"ETH": {"a": "3"}, "BTC": {"a": "4"}}))
    tags = [dict(p.tags) for p in points_of(first) + points_of(second)]
    assert [t[schema.TAG_CURRENCY] for t in tags] == ["BTC", "ETH", "ETH", "BTC"]
    assert all(
        t[schema.TAG_ACCOUNT] == "100001" and t[schema.TAG_ACCOUNT_LABEL] == "desk" for t in tags
    )


def test_a_gap_point_has_the_updates_time() -> None:
    norm = Normalizer(ACCOUNT, "x")
    norm.normalize(detail(10, {"BTC": {"a": "1"}}))
    out = norm.normalize(detail(13, {"BTC": {"a": "2"}}))
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
        out = norm.normalize(detail(ACCOUNT, {"BTC": {"a": "1"}}))
        assert (out.gaps, out.rejected, len(points_of(out))) == ([], None, 1)
    out = norm.normalize(detail(ACCOUNT + 1, {"BTC": {"a": "1"}}))
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
    norm.normalize(detail(10, {"BTC": {"a": "1"}}))
    out = norm.normalize(detail(13, {"BTC": {"a": "2"}}))
    assert out.gaps == [Gap(ASSET_DETAIL, "sequence", 11, 13, 2)]
    assert out.resync is True  # a gap asks for a REST snapshot, not a resubscribe
    assert norm.normalize(detail(14, {"BTC": {"a": "3"}})).resync is False


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
