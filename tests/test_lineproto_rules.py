"""Rules of points.lineproto that a mutation would break unseen (see tests/MUTATION.md)."""

from __future__ import annotations

import math

import pytest

from collector.points.lineproto import FloatText, number_field


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_float_that_is_not_finite_is_not_a_number_field(value: float) -> None:
    # snapshot.py counts a None as an invalid field; the Encoder would drop it silently
    assert number_field(value) is None


@pytest.mark.parametrize(
    ("value", "field"), [(2.5, 2.5), (-0.0, -0.0), (3, 3.0), ("1e5", FloatText("1e5"))]
)
def test_a_finite_number_is_its_field(value: object, field: object) -> None:
    assert number_field(value) == field and type(number_field(value)) is type(field)
