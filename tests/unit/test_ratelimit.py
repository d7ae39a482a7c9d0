"""Rate-limit headers -> seconds to wait: Gate's live form (s), the examples' (ms), and "now"."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.gate.ratelimit import MIN_REFUSAL_WAIT, refusal_wait, reset_timestamp, retry_after

NOW = 1787160950.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1787160954", 1787160954.0),  # live capture: seconds
        ("1787160954123", 1787160954.123),  # WS API examples: milliseconds
        (None, None),
        ("soon", None),
        ("nan", None),
        ("0", None),
        ("-5", None),
    ],
)
def test_reset_timestamp_reads_seconds_and_milliseconds(
    value: str | None, expected: float | None
) -> None:
    assert reset_timestamp(value) == expected


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("7", NOW) == 7.0
    assert retry_after("Thu, 01 Jan 1970 00:00:10 GMT", 5.0) == 5.0
    assert retry_after("Thu, 01 Jan 1970 00:00:10 GMT", 50.0) == 0.0
    assert retry_after("whenever", NOW) is None
    assert retry_after(None, NOW) is None


def test_a_future_reset_is_waited_exactly() -> None:
    wait = refusal_wait(reset=NOW + 4, retry=None, now=NOW, jitter=0.9, cap=60)
    assert wait == pytest.approx(4.0)


@pytest.mark.parametrize("reset", [NOW, NOW - 3, None])
def test_a_reset_of_now_past_or_none_still_waits_a_window(reset: float | None) -> None:
    low = refusal_wait(reset=reset, retry=None, now=NOW, jitter=0.0, cap=60)
    high = refusal_wait(reset=reset, retry=None, now=NOW, jitter=0.999, cap=60)
    assert low == MIN_REFUSAL_WAIT == 10.0
    assert MIN_REFUSAL_WAIT < high < MIN_REFUSAL_WAIT * 1.25  # spread, so callers do not align


def test_retry_after_wins_and_everything_is_capped() -> None:
    assert refusal_wait(reset=NOW + 4, retry=2.0, now=NOW, jitter=0.5, cap=60) == 2.0
    assert refusal_wait(reset=NOW + 4000, retry=None, now=NOW, jitter=0.5, cap=60) == 60.0
    assert refusal_wait(reset=None, retry=None, now=NOW, jitter=0.5, cap=3) == 3.0


# -- Rate-limit headers -> seconds to wait: exact values, capped, never zero ----------

SEED_NOW = 1_716_796_362.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1716796372", 1716796372.0),  # seconds, as live captures send it
        ("1716796372500", 1716796372.5),  # milliseconds, as some examples show
        ("100000000000", 100000000000.0),  # exactly the threshold: still seconds
        ("100000000001", 100000000.001),  # just past it: milliseconds
        ("1.5", 1.5),
        ("1", 1.0),
        ("0.5", 0.5),
        (None, None),
        ("", None),
        ("soon", None),
        ("0", None),
        ("-5", None),
        ("nan", None),
    ],
)
def test_reset_timestamp(value: str | None, seconds: float | None) -> None:
    assert reset_timestamp(value) == seconds


def test_min_refusal_wait_is_gates_ten_second_window() -> None:
    assert MIN_REFUSAL_WAIT == 10.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("-3", None),
        ("soon", None),
        ("1.5", None),  # RFC 9110: delta-seconds are digits only
    ],
)
def test_retry_after_delta_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after(value, SEED_NOW) == seconds


def test_retry_after_an_http_date_is_seconds_from_now() -> None:
    date = email.utils.formatdate(SEED_NOW + 30, usegmt=True)
    assert retry_after(date, SEED_NOW) == 30.0


def test_retry_after_a_past_http_date_is_zero() -> None:
    date = email.utils.formatdate(SEED_NOW - 30, usegmt=True)
    assert retry_after(date, SEED_NOW) == 0.0


@pytest.mark.parametrize(
    ("reset", "retry", "wait"),
    [
        (None, 7.0, 7.0),  # Retry-After
        (SEED_NOW + 20, 7.0, 7.0),  # Retry-After wins over the reset
        (SEED_NOW + 20, None, 20.0),  # the reset in the future
        (SEED_NOW + 20, 0.0, 20.0),  # Retry-After 0 is no answer: the reset decides
        (SEED_NOW, None, MIN_REFUSAL_WAIT),  # a reset that is now: never spin
        (SEED_NOW - 5, None, MIN_REFUSAL_WAIT),  # a reset in the past
        (None, None, MIN_REFUSAL_WAIT),
        (None, 0.0, MIN_REFUSAL_WAIT),
        (None, 1.0, 1.0),  # a short Retry-After is believed
        (None, 0.5, 0.5),
    ],
)
def test_refusal_wait_without_jitter(reset: float | None, retry: float | None, wait: float) -> None:
    assert refusal_wait(reset=reset, retry=retry, now=SEED_NOW, jitter=0.0, cap=60.0) == wait


@pytest.mark.parametrize(
    ("reset", "jitter", "wait"),
    [
        (None, 0.0, 10.0),
        (None, 0.5, 11.25),
        (None, 0.75, 11.875),
        (SEED_NOW, 0.5, 11.25),  # a reset that is now: the same jittered window
        (SEED_NOW - 5, 0.75, 11.875),  # a reset in the past
    ],
)
def test_jitter_spreads_over_a_quarter_of_the_wait(
    reset: float | None, jitter: float, wait: float
) -> None:
    got = refusal_wait(reset=reset, retry=None, now=SEED_NOW, jitter=jitter, cap=60.0)
    assert got == wait


@pytest.mark.parametrize(
    ("reset", "retry", "wait"),
    [(None, 8.0, 8.0), (SEED_NOW + 20, None, 20.0), (SEED_NOW + 20, 8.0, 8.0)],
)
def test_a_told_wait_is_kept_exactly_without_jitter(
    reset: float | None, retry: float | None, wait: float
) -> None:
    assert refusal_wait(reset=reset, retry=retry, now=SEED_NOW, jitter=0.999, cap=60.0) == wait


@pytest.mark.parametrize(
    ("retry", "jitter", "wait"),
    [(3600.0, 0.0, 60.0), (59.0, 0.9, 59.0), (60.0, 0.0, 60.0), (50.0, 0.0, 50.0)],
)
def test_the_cap_bounds_even_a_huge_retry_after(retry: float, jitter: float, wait: float) -> None:
    assert refusal_wait(reset=None, retry=retry, now=SEED_NOW, jitter=jitter, cap=60.0) == wait


def test_the_cap_bounds_a_far_reset() -> None:
    wait = refusal_wait(reset=SEED_NOW + 86400, retry=None, now=SEED_NOW, jitter=0.0, cap=60.0)
    assert wait == 60.0


def test_the_cap_bounds_the_jittered_window() -> None:
    assert refusal_wait(reset=None, retry=None, now=SEED_NOW, jitter=0.75, cap=11.0) == 11.0


@settings(max_examples=300, deadline=None)
@given(
    reset=st.none() | st.floats(min_value=0, max_value=4e9),
    retry=st.none() | st.floats(min_value=0, max_value=1e6),
    jitter=st.floats(min_value=0, max_value=1, exclude_max=True),
    cap=st.floats(min_value=1, max_value=3600),
)
def test_a_refusal_always_waits_some_time_and_never_past_the_cap(
    reset: float | None, retry: float | None, jitter: float, cap: float
) -> None:
    wait = refusal_wait(reset=reset, retry=retry, now=SEED_NOW, jitter=jitter, cap=cap)
    assert 0 < wait <= cap
