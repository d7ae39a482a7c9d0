"""The account book: modes decide what a 0 means, the unit of pushed rates, snapshot times.

Pure: no server. Pushes go through the real normalizer, snapshots through
``snapshot_points`` with bodies built by Gate's SDK models (tests/gate_bodies.py),
and both into the real totals tracker, whose account state is what the
dashboards' ranking, "lowest rate" stat and margin alert read.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.gate.protocol import ASSET_DETAIL, ASSETS, Update
from collector.gate.unified import UnifiedAccount
from collector.points import modes, schema
from collector.points.book import AccountBook, as_float, percent_to_ratio
from collector.points.normalize import Normalizer
from collector.points.snapshot import snapshot_points
from collector.points.totals import SessionState, TotalsTracker
from collector.points.units import AUTO, PERCENT, RATIO, Evidence, RateUnit, judge
from tests import gate_bodies
from tests.helpers import points_of

ACCOUNT = 10001
T0 = 1_716_796_362_000


def push(channel: str, result: dict[str, Any], time_ms: int = T0) -> Update:
    return Update(channel, [{"u": ACCOUNT, "t": time_ms // 1000, **result}], None, time_ms)


def fields_of(normalizer: Normalizer, update: Update) -> list[dict[str, Any]]:
    return [dict(p.fields) for p in points_of(normalizer.normalize(update))]


# -- modes --------------------------------------------------------------------------


def test_a_single_currency_accounts_zero_rates_are_not_applicable_and_counted() -> None:
    book = AccountBook()
    book.set_mode(ACCOUNT, modes.SINGLE_CURRENCY)
    norm = Normalizer(ACCOUNT, "x", facts=book.facts(ACCOUNT))
    (fields,) = fields_of(
        norm, push(ASSETS, {"r": "0.00", "R": "0.00", "b": "0", "e": "12.5", "l": "0", "a": "0"})
    )
    assert fields == {
        "unified_account_total_equity": "12.5",
        "u": ACCOUNT,
        "refresh_time": T0 // 1000,
    }
    assert book.values_not_applicable == 5
    assert book.facts(ACCOUNT).not_applicable == {
        schema.INITIAL_MARGIN_RATE,
        schema.MAINTENANCE_MARGIN_RATE,
        schema.MARGIN_BALANCE,
        schema.LIABILITIES,
        schema.AVAILABLE_MARGIN,
    }


def test_until_the_mode_is_known_a_zero_rate_is_unknown_never_zero() -> None:
    book = AccountBook()
    norm = Normalizer(ACCOUNT, "x", facts=book.facts(ACCOUNT))
    (fields,) = fields_of(norm, push(ASSETS, {"R": "0.00", "e": "1"}))
    assert schema.MAINTENANCE_MARGIN_RATE not in fields
    assert (book.values_mode_unknown, book.values_not_applicable) == (1, 0)
    (fields,) = fields_of(norm, push(ASSETS, {"R": "1.45", "e": "1"}))  # a number is a number
    assert fields[schema.MAINTENANCE_MARGIN_RATE] == "1.45"
    book.set_mode(ACCOUNT, modes.MULTI_CURRENCY)
    (fields,) = fields_of(norm, push(ASSETS, {"R": "0.00", "e": "1"}))
    assert fields[schema.MAINTENANCE_MARGIN_RATE] == "0.00"  # in this mode a 0 is a 0


def test_usdt_margin_figures_apply_only_in_single_currency_mode() -> None:
    book = AccountBook()
    norm = Normalizer(ACCOUNT, "x", facts=book.facts(ACCOUNT))
    extras = {"a": "5", "mb": "0", "im": "0", "mm": "0", "imr": "0", "mmr": "0", "am": "0"}
    book.set_mode(ACCOUNT, modes.MULTI_CURRENCY)
    (fields,) = fields_of(norm, push(ASSET_DETAIL, {"dts": {"USDT": extras}}))
    assert set(fields) == {"available", "u", "refresh_time"}
    book.set_mode(ACCOUNT, modes.SINGLE_CURRENCY)
    usdt = {**extras, "mb": "100", "mm": "50", "mmr": "2.00", "im": "100", "imr": "1.00"}
    btc = {"a": "1", "imr": "0", "mmr": "0"}
    usdt_fields, btc_fields = fields_of(
        norm, push(ASSET_DETAIL, {"dts": {"USDT": usdt, "BTC": btc}})
    )
    assert usdt_fields[schema.DETAIL_MAINTENANCE_MARGIN_RATE] == "2.00"
    assert schema.DETAIL_MAINTENANCE_MARGIN_RATE not in btc_fields  # only USDT has it


def test_a_rate_whose_margin_is_zero_is_gates_no_margin_value() -> None:
    book = AccountBook(RateUnit(PERCENT))
    book.set_mode(ACCOUNT, modes.SINGLE_CURRENCY)
    norm = Normalizer(ACCOUNT, "x", facts=book.facts(ACCOUNT))
    usdt = {"mm": "0.00", "mmr": "9999.99", "im": "0.00", "imr": "0"}  # Gate's example
    (fields,) = fields_of(norm, push(ASSET_DETAIL, {"dts": {"USDT": usdt}}))
    assert fields[schema.DETAIL_MAINTENANCE_MARGIN_RATE] == "9999.99"  # never 99.9999
    assert fields[schema.DETAIL_INITIAL_MARGIN_RATE] == "9999.99"


def test_a_mode_change_forgets_the_values_that_no_longer_apply() -> None:
    book = AccountBook()
    tracker = TotalsTracker("host", "0/1", book)
    book.set_mode(ACCOUNT, modes.MULTI_CURRENCY)
    tracker.account_values(str(ACCOUNT), "x", T0, {"R": "1.3", "e": "10"})
    book.set_mode(ACCOUNT, modes.SINGLE_CURRENCY)
    (state,) = tracker.account_states({str(ACCOUNT): SessionState("x", 0)}, T0 + 1000)
    assert schema.MAINTENANCE_MARGIN_RATE not in state.fields
    assert schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE not in state.fields
    assert state.fields[schema.STATE_MODE] == modes.SINGLE_CURRENCY


@pytest.mark.parametrize(
    ("raw", "zero"),
    [
        ("0", True),
        ("0.00", True),
        ("0.000", True),  # any spelling of 0, not only Gate's usual two
        ("-0.0", True),
        (0, True),
        (0.0, True),
        ("1.5", False),
        ("0.01", False),
        (1, False),
        ("none", False),
        (False, False),  # a JSON false is not a number
        (None, False),
    ],
)
def test_is_zero(raw: Any, zero: bool) -> None:
    assert modes.is_zero(raw) is zero


def test_a_field_whose_meaning_does_not_depend_on_the_mode_always_applies() -> None:
    for mode in (None, modes.CLASSIC, modes.SINGLE_CURRENCY):
        assert modes.assets_applies(mode, schema.EQUITY) is True
        assert modes.detail_applies(mode, schema.DETAIL_EQUITY, "USDT") is True
    assert modes.assets_applies(None, schema.MAINTENANCE_MARGIN_RATE) is None
    assert modes.assets_applies(modes.SINGLE_CURRENCY, schema.MAINTENANCE_MARGIN_RATE) is False
    assert modes.detail_applies(None, "maintenance_margin", "USDT") is None  # unknown, not 0
    assert modes.detail_applies(None, "maintenance_margin", "BTC") is False  # only USDT has it
    assert modes.detail_applies(modes.SINGLE_CURRENCY, "maintenance_margin", "USDT") is True


def test_the_zeros_that_are_not_written_are_counted_one_by_one() -> None:
    book = AccountBook()
    norm = Normalizer(ACCOUNT, "x", facts=book.facts(ACCOUNT))
    fields_of(norm, push(ASSETS, {"r": "0", "R": "0.00", "e": "1"}))
    assert (book.values_mode_unknown, book.values_not_applicable) == (2, 0)
    book.set_mode(ACCOUNT, modes.MULTI_CURRENCY)
    (fields,) = fields_of(
        norm, push(ASSET_DETAIL, {"dts": {"USDT": {"a": "5", "mm": "0", "im": "0"}}})
    )
    assert set(fields) == {"available", "u", "refresh_time"}
    assert (book.values_mode_unknown, book.values_not_applicable) == (2, 2)
    assert book.facts(ACCOUNT).not_applicable == {"maintenance_margin", "initial_margin"}


# -- the effective rate ------------------------------------------------------------------


def effective_after(*bodies: dict[str, Any]) -> dict[str, Any]:
    """The account state after snapshots of ``bodies`` (SDK bodies), as the scheduler feeds it."""
    book = AccountBook()
    tracker = TotalsTracker("host", "0/1", book)
    for at, body in enumerate(bodies):
        result = snapshot_points(ACCOUNT, "x", UnifiedAccount.parse(body), T0 + at)
        book.set_mode(ACCOUNT, result.mode)
        tracker.observe(result.points)
    (state,) = tracker.account_states({str(ACCOUNT): SessionState("x", 0)}, T0 + 1000)
    return dict(state.fields)


@pytest.mark.parametrize("mode", [modes.MULTI_CURRENCY, modes.PORTFOLIO])
def test_the_effective_rate_is_the_accounts_own_in_cross_modes(mode: str) -> None:
    fields = effective_after(gate_bodies.body(mode, margin="80000"))
    assert fields[schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE] == pytest.approx(100016.1 / 80000)
    assert fields[schema.EFFECTIVE_INITIAL_MARGIN_RATE] == pytest.approx(100016.1 / 160000)
    assert fields[schema.STATE_MODE] == mode


def test_the_effective_rate_is_usdts_in_single_currency_mode() -> None:
    fields = effective_after(gate_bodies.body(modes.SINGLE_CURRENCY, usdt_mm="4000"))
    assert fields[schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE] == pytest.approx(5000.12345678 / 4000)
    assert schema.MAINTENANCE_MARGIN_RATE not in fields  # never Gate's 0
    assert fields[schema.STATE_MODE] == modes.SINGLE_CURRENCY


def test_no_margin_in_use_is_the_safe_value_in_every_mode() -> None:
    for body in (
        gate_bodies.body(modes.MULTI_CURRENCY, margin="0"),
        gate_bodies.body(modes.SINGLE_CURRENCY, usdt_mm="0"),
    ):
        fields = effective_after(body)
        assert fields[schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE] == schema.NO_MARGIN_RATE


@pytest.mark.parametrize(
    ("mode", "account_rate", "usdt_rate", "expected"),
    [
        (modes.MULTI_CURRENCY, 1.2, 3.0, 1.2),
        (modes.PORTFOLIO, 1.2, None, 1.2),
        (modes.SINGLE_CURRENCY, 1.2, 3.0, 3.0),
        (modes.SINGLE_CURRENCY, 1.2, None, None),
        (modes.CLASSIC, 1.2, 3.0, None),
        (None, 1.2, 3.0, 1.2),
        (None, None, 3.0, 3.0),
        (None, None, None, None),
    ],
)
def test_effective_rate_rule(
    mode: str | None, account_rate: float | None, usdt_rate: float | None, expected: float | None
) -> None:
    assert modes.effective_rate(mode, account_rate, usdt_rate) == expected


# -- units -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ratio"),
    [
        ("20.10", "0.2010"),
        ("150", "1.50"),
        ("-5.3", "-0.053"),
        ("0.00", "0.0000"),
        ("1e2", "1"),
        ("1e5", "1000"),  # plain decimals, never an exponent
        ("0.00001", "0.0000001"),
        ("n/a", "n/a"),  # not a number: as sent, the line's check drops it
        (150, 1.5),  # a JSON number
        (20.5, 0.205),
        (None, None),
    ],
)
def test_a_percent_becomes_a_ratio_exactly(text: Any, ratio: Any) -> None:
    assert percent_to_ratio(text) == ratio


@given(st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False))
def test_percent_to_ratio_is_exact_for_any_two_decimal_percent(value: Any) -> None:
    assert float(percent_to_ratio(str(value))) == pytest.approx(float(value) / 100, rel=1e-12)


@pytest.mark.parametrize(
    ("ws", "rest", "unit"),
    [
        (1.45, 1.4567, RATIO),  # the push cut to 2 decimals
        (145.67, 1.4567, PERCENT),
        (2006.12, 20.0612, PERCENT),
        (1.2, 1.0, RATIO),  # moved a bit in between
        (14.5, 1.45, None),  # a factor of 10: no evidence either way
        (9999.99, 1.45, None),  # Gate's no-margin value is not evidence
        (0.0, 1.45, None),
        (1.45, 16499.1356783634, None),  # the pushes cap at 9999.99
        (9999.99, 9999.99, None),  # the same in either unit: never evidence
        (9999.99, 99.9999, None),
        (10**0.5, 1.0, RATIO),  # a factor of exactly sqrt(10) off is still evidence
        (10**2.5, 1.0, PERCENT),
    ],
)
def test_judge_one_pair(ws: float, rest: float, unit: str | None) -> None:
    assert judge(ws, rest) == unit


def test_auto_writes_no_pushed_rate_until_a_push_and_a_snapshot_agree() -> None:
    said: list[tuple[Evidence, str]] = []
    book = AccountBook(RateUnit(AUTO, lambda e, outcome: said.append((e, outcome))))
    book.set_mode(ACCOUNT, modes.MULTI_CURRENCY)
    norm = Normalizer(ACCOUNT, "x", facts=book.facts(ACCOUNT))
    (fields,) = fields_of(norm, push(ASSETS, {"R": "145.67", "r": "72.80", "e": "1"}))
    assert schema.MAINTENANCE_MARGIN_RATE not in fields and book.ws_rates_withheld == 2
    book.unit.rest_rate(ACCOUNT, ("", schema.MAINTENANCE_MARGIN_RATE), 1.4567, T0 + 5_000)
    assert book.unit.unit == PERCENT
    (evidence, outcome) = said[0]
    assert outcome == "decided" and evidence.quotient == pytest.approx(100)
    assert evidence.as_dict()["seconds_apart"] == 5.0
    (fields,) = fields_of(norm, push(ASSETS, {"R": "145.67", "e": "1"}, T0 + 10_000))
    assert fields[schema.MAINTENANCE_MARGIN_RATE] == "1.4567"
    assert book.stats()[schema.STAT_WS_RATE_DIVISOR] == 100
    book.unit.rest_rate(ACCOUNT, ("", schema.MAINTENANCE_MARGIN_RATE), 1.0, T0 + 11_000)
    assert len(said) == 1  # once


def test_a_push_and_a_snapshot_too_far_apart_are_no_evidence() -> None:
    unit = RateUnit(AUTO)
    unit.rest_rate(ACCOUNT, ("", schema.MAINTENANCE_MARGIN_RATE), 1.45, T0)
    unit.ws_rate(ACCOUNT, ("", schema.MAINTENANCE_MARGIN_RATE), 145.0, T0 + 61_000)
    assert unit.unit is None
    unit.rest_rate(ACCOUNT, ("", schema.MAINTENANCE_MARGIN_RATE), 1.45, T0 + 62_000)
    assert unit.unit == PERCENT


def test_a_fixed_setting_that_the_evidence_contradicts_is_announced() -> None:
    said: list[str] = []
    unit = RateUnit(RATIO, lambda _e, outcome: said.append(outcome))
    unit.ws_rate(ACCOUNT, ("USDT", schema.DETAIL_MAINTENANCE_MARGIN_RATE), 150.0, T0)
    unit.rest_rate(ACCOUNT, ("USDT", schema.DETAIL_MAINTENANCE_MARGIN_RATE), 1.5, T0)
    assert said == ["mismatch"] and unit.divisor == 1 and unit.mismatch


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1.45", 1.45), (150, 150.0), (1.5, 1.5), ("n/a", None), (None, None), (True, None)],
)
def test_as_float(raw: Any, value: float | None) -> None:
    assert as_float(raw) == value


MMR = ("", schema.MAINTENANCE_MARGIN_RATE)
USDT_MMR = ("USDT", schema.DETAIL_MAINTENANCE_MARGIN_RATE)


def test_the_evidence_says_the_pair_it_rests_on() -> None:
    evidence = Evidence(
        PERCENT, ACCOUNT, "USDT maintenance_margin_rate", 145.0, 1.4567, T0 + 1_234, T0
    )
    assert evidence.as_dict() == {
        "unit": PERCENT,
        "account": ACCOUNT,
        "field": "USDT maintenance_margin_rate",
        "ws_value": 145.0,
        "rest_value": 1.4567,
        "ws_over_rest": 99.5401,
        "seconds_apart": 1.234,
    }


@pytest.mark.parametrize("snapshot_first", [True, False])
def test_a_push_and_a_snapshot_a_minute_apart_decide_in_either_order(snapshot_first: bool) -> None:
    said: list[tuple[Evidence, str]] = []
    unit = RateUnit(AUTO, lambda e, outcome: said.append((e, outcome)))
    assert unit.describe() == {"setting": AUTO, "unit": None, "mismatch": False, "evidence": None}
    if snapshot_first:
        unit.rest_rate(ACCOUNT, USDT_MMR, 1.5, T0)
        unit.ws_rate(ACCOUNT, USDT_MMR, 150.0, T0 + 60_000)
    else:
        unit.ws_rate(ACCOUNT, USDT_MMR, 150.0, T0 + 60_000)
        unit.rest_rate(ACCOUNT, USDT_MMR, 1.5, T0)
    evidence = Evidence(
        PERCENT, ACCOUNT, "USDT maintenance_margin_rate", 150.0, 1.5, T0 + 60_000, T0
    )
    assert said == [(evidence, "decided")]
    assert unit.describe() == {
        "setting": AUTO,
        "unit": PERCENT,
        "mismatch": False,
        "evidence": evidence.as_dict(),
    }


def test_a_fixed_setting_that_the_evidence_agrees_with_is_confirmed() -> None:
    said: list[str] = []
    unit = RateUnit(PERCENT, lambda _e, outcome: said.append(outcome))
    unit.ws_rate(ACCOUNT, MMR, 150.0, T0)
    unit.rest_rate(ACCOUNT, MMR, 1.5, T0)
    assert said == ["confirmed"] and unit.divisor == 100 and unit.mismatch is False
    assert unit.describe()["setting"] == PERCENT and unit.describe()["unit"] == PERCENT


def test_a_rate_that_is_no_evidence_does_not_replace_the_last_one_that_is() -> None:
    pushed_last = RateUnit(AUTO)
    pushed_last.ws_rate(ACCOUNT, MMR, 145.0, T0)
    pushed_last.ws_rate(ACCOUNT, MMR, schema.NO_MARGIN_RATE, T0 + 1)
    pushed_last.rest_rate(ACCOUNT, MMR, 1.45, T0 + 2)
    assert pushed_last.unit == PERCENT
    read_last = RateUnit(AUTO)
    read_last.rest_rate(ACCOUNT, MMR, 1.45, T0)
    read_last.rest_rate(ACCOUNT, MMR, 0.0, T0 + 1)
    read_last.ws_rate(ACCOUNT, MMR, 145.0, T0 + 2)
    assert read_last.unit == PERCENT


def test_an_account_that_leaves_is_forgotten_with_its_pushed_rates() -> None:
    book = AccountBook(RateUnit(AUTO))
    book.set_mode(ACCOUNT, modes.MULTI_CURRENCY)
    stays = book.facts(99)
    book.unit.ws_rate(ACCOUNT, MMR, 145.0, T0)
    book.unit.ws_rate(99, MMR, 150.0, T0)
    book.retain({99})
    assert book.known(ACCOUNT) is None and book.mode(ACCOUNT) is None
    assert book.known(99) is stays
    book.unit.rest_rate(ACCOUNT, MMR, 1.45, T0)
    assert book.unit.unit is None  # the push of the account that left is no evidence
    book.unit.rest_rate(99, MMR, 1.5, T0)
    assert book.unit.evidence is not None and book.unit.evidence.account == 99


def test_an_undecided_unit_reports_divisor_zero() -> None:
    book = AccountBook(RateUnit(AUTO))
    assert book.stats() == {
        schema.STAT_VALUES_NOT_APPLICABLE: 0,
        schema.STAT_VALUES_MODE_UNKNOWN: 0,
        schema.STAT_WS_RATES_WITHHELD: 0,
        schema.STAT_WS_RATE_DIVISOR: 0,
    }


def test_a_pushed_usdt_rate_is_evidence_under_its_currency() -> None:
    said: list[Evidence] = []
    book = AccountBook(RateUnit(AUTO, lambda e, _outcome: said.append(e)))
    book.set_mode(ACCOUNT, modes.SINGLE_CURRENCY)
    book.unit.rest_rate(ACCOUNT, USDT_MMR, 1.5, T0)
    norm = Normalizer(ACCOUNT, "x", facts=book.facts(ACCOUNT))
    usdt = {"mb": "75", "mm": "50", "mmr": "150.00"}
    (fields,) = fields_of(norm, push(ASSET_DETAIL, {"dts": {"USDT": usdt}}, T0 + 2_000))
    assert fields[schema.DETAIL_MAINTENANCE_MARGIN_RATE] == "1.5000"
    assert said == [
        Evidence(PERCENT, ACCOUNT, "USDT maintenance_margin_rate", 150.0, 1.5, T0 + 2_000, T0)
    ]


def test_a_push_needs_a_look_only_at_the_keys_its_mode_and_unit_leave_in_doubt() -> None:
    book = AccountBook()  # ratio, not yet looked at
    facts = book.facts(ACCOUNT)
    assert facts.assets_keys() == {"r", "R", "b", "l", "a"}  # mode unknown
    book.set_mode(ACCOUNT, modes.MULTI_CURRENCY)
    assert facts.assets_keys() == {"r", "R"}  # the rates, for evidence against the setting
    book.unit.ws_rate(ACCOUNT, MMR, 1.45, T0)
    book.unit.rest_rate(ACCOUNT, MMR, 1.45, T0)
    assert facts.assets_keys() == frozenset()  # everything applies, the unit is confirmed
    book.set_mode(ACCOUNT, modes.SINGLE_CURRENCY)
    assert facts.detail_keys("USDT") == {"tl", "imr", "mmr"}
    single = {"tl", "imr", "mmr", "mb", "im", "mm", "am", "iam"}  # USDT's figures: 0 elsewhere
    assert facts.detail_keys("BTC") == single
    book.set_mode(ACCOUNT, modes.MULTI_CURRENCY)
    assert facts.detail_keys("USDT") == facts.detail_keys("BTC") == single - {"tl"}


# -- snapshot time -----------------------------------------------------------------------


def test_a_snapshot_is_stamped_after_every_push_already_written() -> None:
    book = AccountBook()
    norm = Normalizer(ACCOUNT, "x", facts=book.facts(ACCOUNT))
    norm.normalize(push(ASSETS, {"e": "1"}, T0))
    assert book.snapshot_time(ACCOUNT, T0) == T0 + 1  # the same millisecond: after it
    assert book.snapshot_time(ACCOUNT, T0 - 900) == T0 + 1  # Gate's clock a bit ahead
    assert book.snapshot_time(ACCOUNT, T0 + 5) == T0 + 5
    assert book.snapshot_time(ACCOUNT, T0 - 60_000) == T0 + 1  # a minute ahead: believed
    assert book.snapshot_time(ACCOUNT, T0 - 60_001) == T0 - 60_001  # more: not
    assert book.snapshot_time(ACCOUNT, T0 - 120_000) == T0 - 120_000  # a push far ahead
    assert book.snapshot_time(99, T0) == T0  # no push yet


@given(
    pushes=st.lists(st.integers(min_value=T0 - 5_000, max_value=T0 + 5_000), max_size=30),
    read=st.integers(min_value=T0 - 5_000, max_value=T0 + 5_000),
)
def test_a_snapshot_never_shares_a_timestamp_with_a_push_written_before_it(
    pushes: list[int], read: int
) -> None:
    book = AccountBook()
    norm = Normalizer(ACCOUNT, "x", facts=book.facts(ACCOUNT))
    for at in pushes:  # seed-style pushes without time_ms land on whole seconds: t * 1000
        norm.normalize(Update(ASSETS, [{"u": ACCOUNT, "t": at // 1000, "e": "1"}], None, None))
    stamp = book.snapshot_time(ACCOUNT, read)
    written = {at // 1000 * 1000 for at in pushes}
    assert stamp not in written
    assert all(stamp > at for at in written)
