"""Normalisation rules over several results in one update (tests/MUTATION.md, hot path):
counts add up across results, and records() hands the lines on without a copy."""

from __future__ import annotations

from collector.gate.protocol import ASSET_DETAIL, ASSETS, Update
from collector.points.normalize import Normalizer

ACCOUNT = 100001
TIME_MS = 1716796362915


def test_invalid_fields_add_up_over_the_results_of_one_update() -> None:
    assets = Update(ASSETS, [{"u": 1, "e": "x"}, {"u": 2, "e": "1", "l": "nan"}], None, TIME_MS)
    out = Normalizer(ACCOUNT, "x").normalize(assets)
    assert (out.invalid_fields, len(out.lines)) == (2, 1)
    detail = Update(
        ASSET_DETAIL,
        [{"u": 1, "dts": {"BTC": {"a": "x"}}}, {"u": 2, "dts": {"BTC": {"a": "1", "f": "y"}}}],
        None,
        TIME_MS,
    )
    out = Normalizer(ACCOUNT, "x").normalize(detail)
    assert (out.invalid_fields, len(out.lines)) == (2, 1)


def test_currencies_over_the_cap_add_up_over_the_results_of_one_update() -> None:
    detail = Update(
        ASSET_DETAIL,
        [{"u": 1, "dts": {"A": {"a": "1"}, "B": {"a": "1"}}}, {"u": 2, "dts": {"C": {"a": "1"}}}],
        None,
        TIME_MS,
    )
    out = Normalizer(ACCOUNT, "x", max_currencies=1).normalize(detail)
    assert (out.over_cap, len(out.lines)) == (2, 1)


def test_records_without_gaps_are_the_lines_themselves() -> None:
    out = Normalizer(ACCOUNT, "x").normalize(Update(ASSETS, [{"u": 1, "e": "1"}], None, TIME_MS))
    assert out.gap_points == [] and out.records() is out.lines  # no copy per update


def test_the_cap_is_kept_for_the_sessions_log_line() -> None:
    assert Normalizer(ACCOUNT, "x", max_currencies=3).max_currencies == 3  # session_updates
