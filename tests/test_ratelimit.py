"""Rate-limit headers -> seconds to wait: Gate's live form (s), the examples' (ms), and "now"."""

from __future__ import annotations

import pytest

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
