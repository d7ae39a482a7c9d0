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
