"""GET /unified/accounts bodies -> points, pure, with bodies built by Gate's SDK models.

The bodies are ``gate_api.UnifiedAccount`` / ``UnifiedBalance`` in every mode
(tests/gate_bodies.py), with the zeros the SDK says Gate sends where a field does
not apply: those are not written, and said; the rates are ratios.
"""

from __future__ import annotations

from typing import Any

import pytest

from collector.gate.unified import UnifiedAccount
from collector.points import modes, schema
from collector.points.lineproto import Point
from collector.points.snapshot import SnapshotPoints, snapshot_points
from tests import gate_bodies

ACCOUNT = 10001
TAKEN = 1_700_000_000_123


def body(mode: str = modes.MULTI_CURRENCY, **kwargs: Any) -> dict[str, Any]:
    return gate_bodies.body(mode, user_id=ACCOUNT, **kwargs)


def points_of(raw: dict[str, Any]) -> SnapshotPoints:
    """The points of a body as Gate sent it (parsed by the gate model, as the client does)."""
    return snapshot_points(ACCOUNT, "sub", UnifiedAccount.parse(raw), TAKEN)


def parse(raw: dict[str, Any]) -> tuple[SnapshotPoints, Point, dict[str, Point]]:
    result = points_of(raw)
    assets = result.points[0]
    assert assets.measurement == schema.ASSETS
    detail = {dict(p.tags)[schema.TAG_CURRENCY]: p for p in result.points[1:]}
    return result, assets, detail


def test_a_multi_currency_body_becomes_assets_and_one_point_per_currency() -> None:
    result, assets, detail = parse(body())
    assert dict(assets.tags) == {"account": "10001", "account_label": "sub"}
    assert result.mode == modes.MULTI_CURRENCY and result.user_id == ACCOUNT
    # the WebSocket's r R b e l T a under the same long names, all applying here
    for long_name in schema.ASSETS_FIELDS.values():
        assert long_name in assets.fields
    rate = float(assets.fields[schema.MAINTENANCE_MARGIN_RATE])
    assert rate == pytest.approx(100016.1 / 6.0618)  # a plain ratio, far above 9999.99
    assert assets.fields["total"] == "100016.1"  # REST-only, own name
    assert assets.fields["leverage"] == "3"
    assert "locked" not in assets.fields and "spot_hedge" not in assets.fields
    assert set(detail) == {"BTC", "USDT"}
    btc = detail["BTC"]
    assert btc.fields["available"] == "0.5" and btc.fields["equity"] == "0.5"
    assert btc.fields[schema.DETAIL_LIABILITIES] == "0.1"
    # the USDT-single-currency figures do not apply: Gate's zeros are not written
    for name in ("initial_margin", "maintenance_margin_rate", "margin_balance", "im", "mmr"):
        assert name not in btc.fields
    assert result.not_applicable == {
        "initial_margin",
        "maintenance_margin",
        "initial_margin_rate",
        "maintenance_margin_rate",
        "margin_balance",
        "available_margin",
        "spot_in_use",
        "options_order_loss",
    }
    assert result.values_mode_unknown == 0 and result.invalid_fields == 0


def test_the_points_are_stamped_when_read_and_refresh_time_is_only_a_field() -> None:
    _, assets, detail = parse(body())
    assert {assets.time_ms} | {p.time_ms for p in detail.values()} == {TAKEN}
    assert assets.fields[schema.FIELD_REFRESH_TIME] == gate_bodies.REFRESH_TIME
    assert detail["USDT"].fields[schema.FIELD_REFRESH_TIME] == gate_bodies.REFRESH_TIME


def test_a_single_currency_body_keeps_usdts_rates_and_drops_the_account_level_zeros() -> None:
    result, assets, detail = parse(body(modes.SINGLE_CURRENCY, usdt_mm="2500"))
    assert result.mode == modes.SINGLE_CURRENCY
    for name in (
        schema.MAINTENANCE_MARGIN_RATE,
        schema.INITIAL_MARGIN_RATE,
        schema.MARGIN_BALANCE,
        schema.AVAILABLE_MARGIN,
        schema.LIABILITIES,
        "borrowed",
        "total_maintenance_margin",
        "leverage",
    ):
        assert name not in assets.fields, name  # Gate's 0: "not in this mode"
        assert name in result.not_applicable
    assert assets.fields[schema.EQUITY] == "100016.1"  # applies in every mode
    usdt = detail["USDT"]
    assert float(usdt.fields[schema.DETAIL_MAINTENANCE_MARGIN_RATE]) == pytest.approx(
        5000.12345678 / 2500
    )
    assert usdt.fields["maintenance_margin"] == "2500"
    assert usdt.fields["margin_balance"] == "5000.12345678"
    assert schema.DETAIL_LIABILITIES not in usdt.fields  # "0 in single-currency mode"
    assert "maintenance_margin_rate" not in detail["BTC"].fields  # only USDT has it
    assert dict(result.rates) == {
        ("USDT", schema.DETAIL_MAINTENANCE_MARGIN_RATE): pytest.approx(2.00004938),
        ("USDT", schema.DETAIL_INITIAL_MARGIN_RATE): pytest.approx(1.00002469),
    }


def test_a_portfolio_body_drops_cross_balance_and_keeps_the_account_rates() -> None:
    result, assets, detail = parse(body(modes.PORTFOLIO))
    assert schema.MAINTENANCE_MARGIN_RATE in assets.fields
    assert assets.fields["options_order_loss"] == "0"  # applies in portfolio mode only
    assert "cross_balance" not in detail["BTC"].fields
    assert "spot_in_use" in detail["BTC"].fields
    assert "cross_balance" in result.not_applicable


def test_no_margin_in_use_is_gates_no_margin_value_whatever_the_body_says() -> None:
    for rate in ("0", "9999.99", gate_bodies.GATE_EXAMPLE_RATE):
        raw = body(margin="0")
        raw["total_maintenance_margin_rate"] = rate
        _, assets, _ = parse(raw)
        assert assets.fields[schema.MAINTENANCE_MARGIN_RATE] == schema.NO_MARGIN_RATE
    single = body(modes.SINGLE_CURRENCY, usdt_mm="0")  # USDT: im = mm = imr = mmr = 0
    _, _, detail = parse(single)
    assert detail["USDT"].fields[schema.DETAIL_MAINTENANCE_MARGIN_RATE] == schema.NO_MARGIN_RATE


def test_gates_own_rate_is_written_as_sent_not_capped() -> None:
    raw = body()
    raw["total_maintenance_margin_rate"] = gate_bodies.GATE_EXAMPLE_RATE
    result, assets, _ = parse(raw)
    assert assets.fields[schema.MAINTENANCE_MARGIN_RATE] == gate_bodies.GATE_EXAMPLE_RATE
    assert (("", schema.MAINTENANCE_MARGIN_RATE), 16499.1356783634) in result.rates


def test_without_a_mode_a_zero_that_depends_on_it_is_unknown_never_zero() -> None:
    raw = body(modes.SINGLE_CURRENCY)
    del raw["mode"]
    result, assets, _ = parse(raw)
    assert result.mode is None
    assert schema.MAINTENANCE_MARGIN_RATE not in assets.fields
    # 25 zeros whose meaning needs the mode; BTC's six USDT-only figures never apply
    assert (result.values_mode_unknown, result.values_not_applicable) == (25, 6)
    assert result.not_applicable == {
        "initial_margin",
        "maintenance_margin",
        schema.DETAIL_INITIAL_MARGIN_RATE,
        schema.DETAIL_MAINTENANCE_MARGIN_RATE,
        "margin_balance",
        "available_margin",
    }
    assert assets.fields[schema.EQUITY] == "100016.1"


def test_version_counters_are_not_written() -> None:
    _, _, detail = parse(body())
    for point in detail.values():
        assert "funding_version" not in point.fields
        assert "balance_version" not in point.fields
        assert "enabled_collateral" not in point.fields


def test_numbers_may_come_as_json_numbers_and_ids_as_strings() -> None:
    drifted = body()
    drifted["user_id"] = "10001"
    drifted["refresh_time"] = "1716796364"
    drifted["unified_account_total_equity"] = 100016.1
    drifted["balances"]["BTC"]["available"] = 0.5
    result, assets, detail = parse(drifted)
    assert assets.fields[schema.EQUITY] == 100016.1
    assert detail["BTC"].fields["available"] == 0.5
    assert assets.fields[schema.FIELD_REFRESH_TIME] == 1716796364 and result.user_id == ACCOUNT


def test_without_refresh_time_there_is_no_refresh_time_field() -> None:
    stripped = body()
    del stripped["refresh_time"]
    result = points_of(stripped)
    assert {p.time_ms for p in result.points} == {TAKEN}
    assert all(schema.FIELD_REFRESH_TIME not in p.fields for p in result.points)


def test_a_bad_known_value_drops_that_field_only() -> None:
    bad = body()
    bad["total_margin_balance"] = "1,5"
    bad["balances"]["BTC"]["freeze"] = None
    bad["balances"]["ETH"] = "not an object"
    result, assets, detail = parse(bad)
    assert schema.MARGIN_BALANCE not in assets.fields
    assert assets.fields[schema.TOTAL] == "100016.1"
    assert "freeze" not in detail["BTC"].fields and detail["BTC"].fields["available"] == "0.5"
    assert result.invalid_fields == 3


def test_unknown_numbers_are_kept_and_unknown_words_ignored() -> None:
    extra = body()
    extra["new_loss"] = "1.25"
    extra["margin_mode"] = "multi_currency"
    _, assets, _ = parse(extra)
    assert assets.fields["new_loss"] == "1.25"
    assert "margin_mode" not in assets.fields and "mode" not in assets.fields


def test_an_account_level_number_keeps_its_own_name() -> None:
    extra = body()
    extra["mm"] = "3"  # a per-currency short name, renamed only inside a currency
    _, assets, _ = parse(extra)
    assert assets.fields["mm"] == "3" and "maintenance_margin" not in assets.fields


def test_a_currency_that_names_its_margin_in_full_has_no_margin_in_use_at_zero() -> None:
    raw = body(modes.SINGLE_CURRENCY, usdt_mm="2500")
    usdt = raw["balances"]["USDT"]
    del usdt["mm"], usdt["mmr"]
    usdt["maintenance_margin"] = "0"
    usdt["maintenance_margin_rate"] = "12.5"
    _, _, detail = parse(raw)
    fields = detail["USDT"].fields
    assert fields[schema.DETAIL_MAINTENANCE_MARGIN_RATE] == schema.NO_MARGIN_RATE
    assert fields["maintenance_margin"] == "0"  # applies to USDT here: a real 0


# -- Snapshot rules found by mutation testing (tests/MUTATION.md): drifting ids and times ----------

TAKEN = 1_700_000_000_123


# The whole table of JSON types is the model's (tests/unit/test_unified_account.py);
# here: what the model made of it reaches the points.
@pytest.mark.parametrize(
    ("user_id", "expected"), [(10001, 10001), ("10001", 10001), (10001.5, None), (None, None)]
)
def test_the_user_id_is_an_int_whatever_its_json_type(user_id: Any, expected: int | None) -> None:
    drifted = body()
    drifted["user_id"] = user_id
    assert points_of(drifted).user_id == expected


@pytest.mark.parametrize(
    "refresh", [1716796364, 1716796364.0, "1716796364", 1716796364123, 0, -5, "soon", None]
)
def test_the_refresh_time_never_stamps_the_points(refresh: Any) -> None:
    drifted = body()
    drifted["refresh_time"] = refresh
    assert {p.time_ms for p in points_of(drifted).points} == {TAKEN}


def test_a_currency_that_is_not_an_object_does_not_stop_the_others() -> None:
    drifted = body()
    drifted["balances"] = {"ETH": "not an object", **drifted["balances"], "XRP": [1]}
    drifted["balances"]["USDT"] = {"available": "12"}
    result = points_of(drifted)
    currencies = [dict(p.tags).get(schema.TAG_CURRENCY) for p in result.points]
    assert currencies == [None, "BTC", "USDT"]
    assert result.invalid_fields == 2
