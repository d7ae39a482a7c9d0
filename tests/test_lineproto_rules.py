"""Rules of points.lineproto that a mutation would break unseen (see tests/MUTATION.md)."""

from __future__ import annotations

import math

import pytest

from collector.points import lineproto
from collector.points.lineproto import Encoder, FloatText, Point, number_field


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_float_that_is_not_finite_is_not_a_number_field(value: float) -> None:
    # snapshot.py counts a None as an invalid field; the Encoder would drop it silently
    assert number_field(value) is None


@pytest.mark.parametrize(
    ("value", "field"), [(2.5, 2.5), (-0.0, -0.0), (3, 3.0), ("1e5", FloatText("1e5"))]
)
def test_a_finite_number_is_its_field(value: object, field: object) -> None:
    assert number_field(value) == field and type(number_field(value)) is type(field)


def test_the_encoders_caches_are_cleared_when_they_reach_their_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the bound keeps memory flat when keys churn (200 000 in production)
    monkeypatch.setattr(lineproto, "_CACHE_LIMIT", 2)
    encoder = Encoder()
    for n in range(2):
        assert encoder.encode(Point("m", (("t", str(n)),), {f"f{n}": 1}, 5)) == f"m,t={n} f{n}=1i 5"
    assert (len(encoder._series), len(encoder._keys)) == (2, 2)
    assert encoder.encode(Point("m", (("t", "2"),), {"f2": 1}, 5)) == "m,t=2 f2=1i 5"
    assert (len(encoder._series), len(encoder._keys)) == (1, 1)  # cleared, then the new one


def test_a_field_of_an_unsupported_type_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"^field 'bad' has unsupported type list$"):
        Encoder().encode(Point("m", (), {"bad": [1]}, 5))  # type: ignore[dict-item]
