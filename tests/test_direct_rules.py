"""Rules of points.direct that a mutation would break unseen (see tests/MUTATION.md).

The series and field prefixes are built once, at import: mutmut 3 imports the module
before it switches a mutant on, so the builder is pinned here by calling it.
"""

from __future__ import annotations

from collector.points import schema
from collector.points.direct import _prefixes


def test_prefixes_are_the_escaped_long_names_with_an_equals_sign() -> None:
    assert _prefixes({"a": "total available", "b": "x,y=z"}) == {
        "a": "total\\ available=",
        "b": "x\\,y\\=z=",
    }
    assert _prefixes(schema.ASSETS_FIELDS)["e"] == schema.EQUITY + "="
