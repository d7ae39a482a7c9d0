"""The hot path's line text (points.direct): the checks, the caches and what the totals are told.

Normalisation as a whole is pinned in tests/test_normalize*.py (through the lines
parsed back); here the details a change of direct.py could break unseen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from collector.gate.protocol import ASSET_DETAIL, Update
from collector.points import modes, schema
from collector.points.book import AccountBook
from collector.points.direct import AccountLines, _prefixes, common_fields, value_text
from collector.points.lineproto import Encoder, FloatText, Point, number_field
from collector.points.normalize import Normalizer
from collector.points.units import PERCENT, Evidence, RateUnit
from tests.helpers import points_of

TIME = 1716796362915


class Seen:
    """An Observer that keeps what it was told."""

    def __init__(self) -> None:
        self.told: list[tuple[Any, ...]] = []

    def account_values(
        self, account: str, label: str, time_ms: int, values: Mapping[str, Any]
    ) -> None:
        self.told.append((account, label, time_ms, dict(values)))

    def currency_values(
        self, account: str, label: str, currency: str, time_ms: int, values: Mapping[str, Any]
    ) -> None:
        self.told.append((account, label, currency, time_ms, dict(values)))


def test_fast_path_line_equals_the_encoders_for_the_same_point() -> None:
    lines: list[str] = []
    bad, over = AccountLines(7, "desk a").detail(
        {"u": 3, "t": 9, "dts": {"BTC": {"a": "1.5", "f": "-2", "mmr": "1e-05"}}}, TIME, lines
    )
    point = Point(
        schema.ASSET_DETAIL,
        (("account", "7"), ("account_label", "desk a"), ("currency", "BTC")),
        {
            "available": FloatText("1.5"),
            "freeze": FloatText("-2"),
            "maintenance_margin_rate": FloatText("1e-05"),
            "u": 3,
            "refresh_time": 9,
        },
        TIME,
    )
    assert (lines, bad, over) == ([Encoder().encode(point)], 0, 0)
    assert lines[0] == (
        "gate_unified_asset_detail,account=7,account_label=desk\\ a,currency=BTC "
        "available=1.5,freeze=-2,maintenance_margin_rate=1e-05,u=3i,refresh_time=9i " + str(TIME)
    )


def test_a_key_gate_added_is_written_under_its_own_escaped_name() -> None:
    lines: list[str] = []
    AccountLines(7, "x").detail({"dts": {"BTC": {"a": "1", "new key": "2"}}}, TIME, lines)
    assert lines == [
        "gate_unified_asset_detail,account=7,account_label=x,currency=BTC "
        f"available=1,new\\ key=2 {TIME}"
    ]


def test_the_results_own_u_and_t_win_over_a_currency_field_of_that_name() -> None:
    lines: list[str] = []
    AccountLines(7, "x").detail(
        {"u": 5, "dts": {"BTC": {"u": "1", "refresh_time": "2", "a": "1", "available": "3"}}},
        TIME,
        lines,
    )
    # u from the result (an integer), refresh_time as the currency sent it (no t in the
    # result), "available" once (the later value, as a dict would keep it)
    assert lines == [
        "gate_unified_asset_detail,account=7,account_label=x,currency=BTC "
        f"refresh_time=2,available=3,u=5i {TIME}"
    ]


def test_assets_skip_u_t_and_c_and_count_each_bad_value() -> None:
    lines: list[str] = []
    seen = Seen()
    bad = AccountLines(7, "x", seen).assets(
        {"u": 1, "t": 2, "c": "3", "e": "4", "l": "1,5", "T": True, "a": 2.5}, TIME, lines
    )
    assert bad == 2
    assert lines == [
        f"gate_unified_assets,account=7,account_label=x "
        f"unified_account_total_equity=4,total_available_margin=2.5,u=1i,refresh_time=2i {TIME}"
    ]
    assert seen.told == [("7", "x", TIME, {"e": "4", "a": "2.5"})]


def test_nothing_writable_writes_no_line_and_tells_nothing() -> None:
    lines: list[str] = []
    seen = Seen()
    target = AccountLines(7, "x", seen)
    assert target.assets({"u": 1, "t": 2, "e": "nan"}, TIME, lines) == 1
    assert target.detail({"u": 1, "dts": {"BTC": {"a": None}, "ETH": {}}}, TIME, lines) == (1, 0)
    assert target.detail({"dts": "not an object"}, TIME, lines) == (1, 0)
    assert target.detail({"dts": {"BTC": [1]}}, TIME, lines) == (1, 0)
    assert lines == [] and seen.told == []


def test_the_observer_hears_each_written_currency_with_its_good_values_only() -> None:
    lines: list[str] = []
    seen = Seen()
    AccountLines(7, "x", seen).detail(
        {"dts": {"BTC": {"a": "1", "f": "2"}, "ETH": {"a": "x", "e": "3"}}}, TIME, lines
    )
    assert seen.told == [
        ("7", "x", "BTC", TIME, {"a": "1", "f": "2"}),
        ("7", "x", "ETH", TIME, {"e": "3"}),
    ]


def test_the_currency_cap_counts_new_currencies_and_keeps_known_ones() -> None:
    lines: list[str] = []
    seen = Seen()
    target = AccountLines(7, "x", seen, max_currencies=2)
    frame = {"dts": {"A": {"a": "1"}, "B": {"a": "1"}, "C": {"a": "1"}, "D": {"a": "x"}}}
    assert target.detail(frame, TIME, lines) == (1, 1)  # D: no good value, not over the cap
    assert [line.split(" ")[0].rsplit("=", 1)[1] for line in lines] == ["A", "B"]
    assert [told[2] for told in seen.told] == ["A", "B"]
    assert target.detail({"dts": {"B": {"a": "2"}, "E": {"a": "2"}}}, TIME, lines) == (0, 1)
    assert target.max_currencies == 2


@pytest.mark.parametrize(
    ("result", "suffix"),
    [
        ({"u": 1, "t": 2}, ",u=1i,refresh_time=2i"),
        ({"u": 1}, ",u=1i"),
        ({"t": 2}, ",refresh_time=2i"),
        ({"u": True, "t": "2"}, ""),
        ({}, ""),
    ],
)
def test_common_fields_are_the_integers_the_result_carries(
    result: dict[str, Any], suffix: str
) -> None:
    text, names = common_fields(result)
    assert text == suffix
    assert names == {name for name in ("u", "refresh_time") if f",{name}=" in suffix}


@pytest.mark.parametrize(
    "raw", ["1.5", "-0", "1e5", "1,5", "", "nan", 3, 10**17, 2.5, -0.0, float("inf"), True, None]
)
def test_value_text_is_what_the_encoder_writes_for_number_field(raw: Any) -> None:
    number = number_field(raw)
    expected = None
    if number is not None:
        line = Encoder().encode(Point("m", (), {"f": number}, 1))
        expected = None if line is None else line[len("m f=") : -len(" 1")]
    assert value_text(raw) == expected


# -- Rules of points.direct that a mutation would break unseen (see tests/MUTATION.md) ----------

DETAIL_SERIES = "gate_unified_asset_detail,account=7,account_label=x,currency=BTC "


def test_prefixes_are_the_escaped_long_names_with_an_equals_sign() -> None:
    assert _prefixes({"a": "total available", "b": "x,y=z"}) == {
        "a": "total\\ available=",
        "b": "x\\,y\\=z=",
    }
    assert _prefixes(schema.ASSETS_FIELDS)["e"] == schema.EQUITY + "="


def test_a_quote_in_a_field_key_is_a_plain_character_of_the_key() -> None:
    # hypothesis found it (test_normalize): the line is valid, tests/lines.py once read
    # the quote as the start of a string value and could not parse the line back
    out = Normalizer(100001, "x").normalize(
        Update(ASSET_DETAIL, [{"dts": {"": {'"': 0}}}], 1, None)
    )
    assert out.lines == ['gate_unified_asset_detail,account=100001,account_label=x "=0 1000']
    assert points_of(out) == [
        Point(
            schema.ASSET_DETAIL, (("account", "100001"), ("account_label", "x")), {'"': "0"}, 1000
        )
    ]


@pytest.mark.parametrize("odd", ["1,5", "1,5,6", "1,,5"])
def test_a_value_with_commas_among_good_strings_is_dropped_not_written(odd: str) -> None:
    # the fast path checks all values joined by commas: the comma count gives these away
    lines: list[str] = []
    assert AccountLines(7, "x").assets({"e": "4", "l": odd}, TIME, lines) == 1
    assert lines == [f"gate_unified_assets,account=7,account_label=x {schema.EQUITY}=4 {TIME}"]


@pytest.mark.parametrize("values", [{"a": "1,5"}, {"a": "1", "f": "1,5,6"}])
def test_a_currency_value_with_commas_is_dropped_not_written(values: dict[str, str]) -> None:
    lines: list[str] = []
    bad, over = AccountLines(7, "x").detail({"dts": {"BTC": values}}, TIME, lines)
    assert (bad, over) == (1, 0)
    good = "available=1 " if "f" in values else ""
    assert lines == ([f"{DETAIL_SERIES}{good}{TIME}"] if good else [])


def test_a_detail_result_without_dts_writes_nothing_and_counts_nothing() -> None:
    lines: list[str] = []
    assert AccountLines(7, "x").detail({"u": 1, "t": 2}, TIME, lines) == (0, 0)
    assert lines == []


def test_every_currency_over_the_cap_in_one_frame_is_counted() -> None:
    lines: list[str] = []
    target = AccountLines(7, "x", max_currencies=1)
    frame = {"dts": {"A": {"a": "1"}, "B": {"a": "1"}, "C": {"a": "1"}}}
    assert target.detail(frame, TIME, lines) == (0, 2)
    assert lines == [f"{DETAIL_SERIES.replace('=BTC', '=A')}available=1 {TIME}"]


def test_a_lone_value_with_a_comma_is_dropped_not_written() -> None:
    lines: list[str] = []
    assert AccountLines(7, "x").assets({"u": 1, "l": "1,5"}, TIME, lines) == 1
    assert lines == []


def test_a_pushed_currency_rate_is_judged_with_the_pushs_time() -> None:
    book = AccountBook(RateUnit())  # auto: the unit is decided from a push and a snapshot
    book.set_mode(7, modes.SINGLE_CURRENCY)
    book.unit.rest_rate(7, ("USDT", schema.DETAIL_MAINTENANCE_MARGIN_RATE), 1.5, TIME - 1000)
    lines: list[str] = []
    usdt = {"mmr": "150", "mm": "10"}
    AccountLines(7, "x", facts=book.facts(7)).detail({"dts": {"USDT": usdt}}, TIME, lines)
    field = "USDT maintenance_margin_rate"
    assert book.unit.evidence == Evidence(PERCENT, 7, field, 150.0, 1.5, TIME, TIME - 1000)
    assert lines == [
        "gate_unified_asset_detail,account=7,account_label=x,currency=USDT "
        f"maintenance_margin_rate=1.50,maintenance_margin=10 {TIME}"
    ]  # the percent written as a ratio
