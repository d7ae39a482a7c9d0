"""The typed ``GET /unified/accounts`` body (collector.gate.unified), pure.

Bodies built with Gate's SDK models (tests/gate_bodies.py) parse with every SDK
field; Gate's drift (numbers as strings, ids as floats, unknown fields, missing
ones) is taken as Gate sends it; a body that is not an object is one line naming it.
"""

from __future__ import annotations

from typing import Any

import gate_api
import pytest

from collector.gate.errors import BadResponseError, GateError
from collector.gate.unified import UnifiedAccount, UnifiedBalance, as_int
from collector.points import modes
from tests import gate_bodies


@pytest.mark.parametrize("mode", sorted(modes.MODES))
def test_an_sdk_body_parses_with_every_field_as_sent(mode: str) -> None:
    raw = gate_bodies.body(mode, user_id=10001)
    account = UnifiedAccount.parse(raw)
    assert (account.mode, account.user_id) == (mode, 10001)
    assert account.refresh_time == gate_bodies.REFRESH_TIME
    skip = {"mode", "user_id", "refresh_time", "balances"}
    assert account.account_values() == {k: v for k, v in raw.items() if k not in skip}
    assert set(account.balances) == set(raw["balances"])
    for currency, balance in account.balances.items():
        assert balance is not None
        assert balance.values() == raw["balances"][currency]


def test_the_model_declares_every_field_of_gates_sdk_in_its_order() -> None:
    sdk_account = list(gate_api.UnifiedAccount.openapi_types)
    sdk_balance = list(gate_api.UnifiedBalance.openapi_types)
    assert list(UnifiedAccount.model_fields) == sdk_account
    assert list(UnifiedBalance.model_fields) == sdk_balance


def test_missing_fields_are_none_and_unknown_ones_kept() -> None:
    account = UnifiedAccount.parse({"user_id": 7, "new_loss": "1.25", "mode": "portfolio"})
    assert account.total is None and account.refresh_time is None
    assert account.balances == {}
    assert account.account_values() == {"new_loss": "1.25"}
    assert account.model_extra == {"new_loss": "1.25"}


def test_a_number_is_kept_as_gate_sent_it() -> None:
    account = UnifiedAccount.parse(
        {"total": "100016.1", "leverage": 3, "balances": {"BTC": {"available": 0.5, "x": None}}}
    )
    assert account.account_values() == {"total": "100016.1", "leverage": 3}
    btc = account.balances["BTC"]
    assert btc is not None and btc.values() == {"available": 0.5, "x": None}


def test_a_value_sent_as_null_is_kept_apart_from_one_not_sent() -> None:
    balance = UnifiedAccount.parse({"balances": {"BTC": {"freeze": None}}}).balances["BTC"]
    assert balance is not None
    assert balance.values() == {"freeze": None}
    assert balance.available is None and "available" not in balance.values()


@pytest.mark.parametrize("balances", ["BTC", ["BTC"], None, 3])
def test_balances_that_are_no_object_are_no_balances(balances: Any) -> None:
    assert UnifiedAccount.parse({"balances": balances}).balances == {}


def test_a_currency_that_is_no_object_is_none_and_the_others_stay() -> None:
    account = UnifiedAccount.parse({"balances": {"ETH": "x", "BTC": {"available": "1"}, "X": [1]}})
    assert list(account.balances) == ["ETH", "BTC", "X"]
    assert account.balances["ETH"] is None and account.balances["X"] is None
    btc = account.balances["BTC"]
    assert btc is not None and btc.available == "1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10001, 10001),
        (10001.0, 10001),
        (10001.5, None),
        ("10001", 10001),
        (" 10001 ", 10001),
        ("-7", -7),
        ("X7", None),
        ("--5", None),
        ("\u00b2", None),  # a digit to str.isdigit, not to int()
        ("+5", None),
        ("7-", None),
        ("", None),
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_an_id_or_a_time_is_an_int_whatever_its_json_type(value: Any, expected: Any) -> None:
    assert as_int(value) == expected
    account = UnifiedAccount.parse({"user_id": value, "refresh_time": value})
    assert (account.user_id, account.refresh_time) == (expected, expected)


@pytest.mark.parametrize(
    ("body", "mode", "classic"),
    [
        ({"mode": "classic"}, "classic", "classic"),
        ({"mode": "Classic"}, "Classic", "classic"),
        ({"margin_mode": "CLASSIC"}, None, "classic"),
        ({"mode": "multi_currency", "margin_mode": "classic"}, "multi_currency", None),
        ({"mode": None, "margin_mode": "classic"}, None, None),  # mode said, and not classic
        ({"mode": 1}, None, None),
        ({"margin_mode": 1}, None, None),
        ({}, None, None),
    ],
)
def test_the_mode_and_whether_it_says_classic(
    body: dict[str, Any], mode: str | None, classic: str | None
) -> None:
    account = UnifiedAccount.parse(body)
    assert account.mode == mode
    assert account.classic_mode == classic


@pytest.mark.parametrize("data", [None, [1, 2], "text", 3])
def test_a_body_that_is_no_object_is_one_line_naming_it(data: Any) -> None:
    with pytest.raises(BadResponseError) as info:
        UnifiedAccount.parse(data)
    assert isinstance(info.value, GateError)
    text = str(info.value)
    assert text == f"GET /unified/accounts: expected a JSON object, got {data!r}"
    assert "\n" not in text


def test_a_long_body_that_is_no_object_is_cut() -> None:
    with pytest.raises(BadResponseError) as info:
        UnifiedAccount.parse(["x" * 500])
    assert (
        str(info.value)
        == "GET /unified/accounts: expected a JSON object, got " + repr(["x" * 500])[:100]
    )
