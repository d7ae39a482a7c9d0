"""Snapshot rules found by mutation testing (tests/MUTATION.md): drifting ids and times."""

from __future__ import annotations

from typing import Any

import pytest

from collector.points import schema
from collector.points.snapshot import snapshot_points
from tests.test_snapshot_points import ACCOUNT, body

TAKEN = 1_700_000_000_123


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        (10001, 10001),
        (10001.0, 10001),  # a JSON float that is a whole number
        (10001.5, None),
        ("10001", 10001),
        (" 10001 ", 10001),
        ("-7", -7),
        ("X7", None),
        ("7-", None),
        ("", None),
        (True, None),
        (None, None),
    ],
)
def test_the_user_id_is_an_int_whatever_its_json_type(user_id: Any, expected: int | None) -> None:
    drifted = body()
    drifted["user_id"] = user_id
    assert snapshot_points(ACCOUNT, "sub", drifted, TAKEN).user_id == expected


@pytest.mark.parametrize(
    "refresh", [1716796364, 1716796364.0, "1716796364", 1716796364123, 0, -5, "soon", None]
)
def test_the_refresh_time_never_stamps_the_points(refresh: Any) -> None:
    drifted = body()
    drifted["refresh_time"] = refresh
    assert {p.time_ms for p in snapshot_points(ACCOUNT, "sub", drifted, TAKEN).points} == {TAKEN}


def test_a_currency_that_is_not_an_object_does_not_stop_the_others() -> None:
    drifted = body()
    drifted["balances"] = {"ETH": "not an object", **drifted["balances"], "XRP": [1]}
    drifted["balances"]["USDT"] = {"available": "12"}
    result = snapshot_points(ACCOUNT, "sub", drifted, TAKEN)
    currencies = [dict(p.tags).get(schema.TAG_CURRENCY) for p in result.points]
    assert currencies == [None, "BTC", "USDT"]
    assert result.invalid_fields == 2
