"""Rules of points.direct that a mutation would break unseen (see tests/MUTATION.md).

The series and field prefixes are built once, at import: mutmut 3 imports the module
before it switches a mutant on, so the builder is pinned here by calling it.
"""

from __future__ import annotations

from collector.gate.protocol import ASSET_DETAIL, Update
from collector.points import schema
from collector.points.direct import _prefixes
from collector.points.lineproto import Point
from collector.points.normalize import Normalizer
from tests.lines import points_of


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
