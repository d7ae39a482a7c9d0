"""Rules of points.direct that a mutation would break unseen (see tests/MUTATION.md).

The series and field prefixes are built once, at import: mutmut 3 imports the module
before it switches a mutant on, so the builder is pinned here by calling it.
"""

from __future__ import annotations

import pytest

from collector.gate.protocol import ASSET_DETAIL, Update
from collector.points import schema
from collector.points.direct import AccountLines, _prefixes
from collector.points.lineproto import Point
from collector.points.normalize import Normalizer
from tests.lines import points_of

TIME = 1716796362915
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
