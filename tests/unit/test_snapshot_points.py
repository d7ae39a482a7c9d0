"""GET /unified/accounts bodies -> points, pure, with Gate's documented body."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from collector.points import schema
from collector.points.snapshot import snapshot_points, snapshot_time_ms

ACCOUNT = 10001
# Verbatim from gate-vectors.md (abridged from Gate's documentation).
DOC_BODY = (
    b'{"user_id":10001,"refresh_time":1716796364,"locked":false,"balances":{"BTC":'
    b'{"available":"0.5","freeze":"0","borrowed":"0","negative_liab":"0","futures_pos_liab":"0",'
    b'"equity":"0.5","total_freeze":"0","total_liab":"0","spot_in_use":"0","funding":"0",'
    b'"cross_balance":"0","iso_balance":"0","im":"0","mm":"0","imr":"0","mmr":"0",'
    b'"margin_balance":"0.5","available_margin":"0.5"}},"total":"100016.1","borrowed":"0",'
    b'"total_initial_margin":"0","total_margin_balance":"100016.1",'
    b'"total_maintenance_margin":"0","total_initial_margin_rate":"9999.99",'
    b'"total_maintenance_margin_rate":"9999.99","total_available_margin":"100016.1",'
    b'"unified_account_total":"100016.1","unified_account_total_liab":"0",'
    b'"unified_account_total_equity":"100016.1","leverage":"3","spot_order_loss":"0",'
    b'"spot_hedge":false}'
)


def body() -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(DOC_BODY)
    return parsed


def test_the_documented_body_becomes_assets_and_one_point_per_currency() -> None:
    result = snapshot_points(ACCOUNT, "sub", body(), taken_ms=1)
    assets, btc = result.points
    assert assets.measurement == schema.ASSETS
    assert dict(assets.tags) == {"account": "10001", "account_label": "sub"}
    assert assets.time_ms == 1716796364000  # refresh_time, not when taken
    # the WebSocket's r R b e l T a under the same long names
    for long_name in schema.ASSETS_FIELDS.values():
        assert long_name in assets.fields
    assert assets.fields[schema.MAINTENANCE_MARGIN_RATE] == "9999.99"
    assert assets.fields["total"] == "100016.1"  # REST-only, own name
    assert assets.fields["leverage"] == "3"
    assert assets.fields[schema.FIELD_REFRESH_TIME] == 1716796364
    assert "locked" not in assets.fields and "spot_hedge" not in assets.fields
    assert btc.measurement == schema.ASSET_DETAIL
    assert dict(btc.tags)["currency"] == "BTC"
    assert btc.fields["available"] == "0.5"
    assert btc.fields["equity"] == "0.5"
    # the REST short names of the margin figures are the push's long names
    assert btc.fields["initial_margin"] == "0"
    assert btc.fields["maintenance_margin_rate"] == "0"
    assert "im" not in btc.fields
    assert btc.fields["margin_balance"] == "0.5"
    assert result.invalid_fields == 0
    assert result.user_id == ACCOUNT


def test_push_and_snapshot_share_names_for_what_both_carry() -> None:
    (_, btc) = snapshot_points(ACCOUNT, "sub", body(), taken_ms=1).points
    push_names = set(schema.DETAIL_FIELDS.values())
    assert {"available", "freeze", "equity", "total_liab"} <= set(btc.fields) & push_names


def test_numbers_may_come_as_json_numbers_and_ids_as_strings() -> None:
    drifted = body()
    drifted["user_id"] = "10001"
    drifted["refresh_time"] = "1716796364"
    drifted["unified_account_total_equity"] = 100016.1
    drifted["balances"]["BTC"]["available"] = 0.5
    result = snapshot_points(ACCOUNT, "sub", drifted, taken_ms=1)
    assets, btc = result.points
    assert assets.fields[schema.EQUITY] == 100016.1
    assert btc.fields["available"] == 0.5
    assert assets.time_ms == 1716796364000 and result.user_id == ACCOUNT


def test_without_refresh_time_the_time_taken_stamps_the_points() -> None:
    stripped = body()
    del stripped["refresh_time"]
    result = snapshot_points(ACCOUNT, "sub", stripped, taken_ms=1_700_000_000_123)
    assert {p.time_ms for p in result.points} == {1_700_000_000_123}
    assert all(schema.FIELD_REFRESH_TIME not in p.fields for p in result.points)


def test_a_bad_known_value_drops_that_field_only() -> None:
    bad = body()
    bad["total_margin_balance"] = "1,5"
    bad["balances"]["BTC"]["freeze"] = None
    bad["balances"]["ETH"] = "not an object"
    result = snapshot_points(ACCOUNT, "sub", bad, taken_ms=1)
    assets, btc = result.points
    assert schema.MARGIN_BALANCE not in assets.fields
    assert assets.fields[schema.TOTAL] == "100016.1"
    assert "freeze" not in btc.fields and btc.fields["available"] == "0.5"
    assert result.invalid_fields == 3


def test_unknown_numbers_are_kept_and_unknown_words_ignored() -> None:
    extra = body()
    extra["options_order_loss"] = "1.25"
    extra["margin_mode"] = "multi_currency"
    (assets, _) = snapshot_points(ACCOUNT, "sub", extra, taken_ms=1).points
    assert assets.fields["options_order_loss"] == "1.25"
    assert "margin_mode" not in assets.fields


# -- Snapshot rules found by mutation testing (tests/MUTATION.md): drifting ids and times ----------

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
    ("refresh", "expected"),
    [
        (1716796364, 1716796364000),  # seconds
        (1716796364.0, 1716796364000),
        ("1716796364", 1716796364000),
        (1716796364123, 1716796364123),  # already milliseconds
        (100_000_000_000, 100_000_000_000),  # the threshold itself is milliseconds
        (99_999_999_999, 99_999_999_999_000),
        (1, 1000),
        (0, TAKEN),  # not a time: when it was taken
        (-5, TAKEN),
        ("-5", TAKEN),
        ("soon", TAKEN),
        (None, TAKEN),
    ],
)
def test_the_refresh_time_in_seconds_or_milliseconds(refresh: Any, expected: int) -> None:
    assert snapshot_time_ms({"refresh_time": refresh}, TAKEN) == expected
    drifted = body()
    drifted["refresh_time"] = refresh
    assert {p.time_ms for p in snapshot_points(ACCOUNT, "sub", drifted, TAKEN).points} == {expected}


def test_a_currency_that_is_not_an_object_does_not_stop_the_others() -> None:
    drifted = body()
    drifted["balances"] = {"ETH": "not an object", **drifted["balances"], "XRP": [1]}
    drifted["balances"]["USDT"] = {"available": "12"}
    result = snapshot_points(ACCOUNT, "sub", drifted, TAKEN)
    currencies = [dict(p.tags).get(schema.TAG_CURRENCY) for p in result.points]
    assert currencies == [None, "BTC", "USDT"]
    assert result.invalid_fields == 2
