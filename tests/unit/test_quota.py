"""The per-endpoint quota, without a server: headers in, waits on trio's (autojump) clock."""

from __future__ import annotations

import email.utils
import random

import pytest
import trio
from structlog.testing import capture_logs
from trio.testing import MockClock

from collector.gate.quota import RESET_MARGIN_SECONDS, Quotas
from collector.gate.ratelimit import MIN_REFUSAL_WAIT

EP = "/unified/accounts"
# Gate's wall clock runs 5000 s ahead of trio's: a reset is read on Gate's clock.
GATE_OFFSET = 5000.0


def gate_now() -> float:
    return GATE_OFFSET + trio.current_time()


def quotas(max_wait: float = 100.0, seed: int = 3) -> Quotas:
    return Quotas(gate_now, random.Random(seed), max_wait)


def limit(remain: str, reset_in: float) -> dict[str, str]:
    reset = gate_now() + reset_in
    return {
        "X-Gate-RateLimit-Requests-Remain": remain,
        "X-Gate-RateLimit-Reset-Timestamp": f"{reset:.3f}",
    }


async def free_takes(q: Quotas, endpoint: str = EP, most: int = 20) -> int:
    """How many takes return at once (no time passes) before one has to wait."""
    count = 0
    while count < most:
        start = trio.current_time()
        with trio.move_on_after(1e-3) as scope:
            await q.take(endpoint)
        if scope.cancelled_caught:
            return count
        assert trio.current_time() == start
        count += 1
    return count


async def time_of_take(q: Quotas, endpoint: str = EP) -> float:
    """Seconds (trio) one take waited."""
    start = trio.current_time()
    with trio.fail_after(1000):
        await q.take(endpoint)
    return trio.current_time() - start


async def test_an_unknown_endpoint_never_waits(autojump_clock: MockClock) -> None:
    assert await free_takes(quotas()) == 20


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Gate-RateLimit-Reset-Timestamp": "5010"},  # no remain
        {"X-Gate-RateLimit-Requests-Remain": "0"},  # no reset
        {"X-Gate-RateLimit-Requests-Remain": "-1", "X-Gate-RateLimit-Reset-Timestamp": "5010"},
        {"X-Gate-RateLimit-Requests-Remain": "x", "X-Gate-RateLimit-Reset-Timestamp": "5010"},
        {"X-Gate-RateLimit-Requests-Remain": "0", "X-Gate-RateLimit-Reset-Timestamp": "soon"},
    ],
)
async def test_an_incomplete_or_bad_quota_is_not_remembered(
    headers: dict[str, str], autojump_clock: MockClock
) -> None:
    q = quotas()
    q.observe(EP, headers)
    assert await free_takes(q) == 20


async def test_the_remaining_count_is_taken_then_the_reset_is_awaited(
    autojump_clock: MockClock,
) -> None:
    q = quotas()
    q.observe(EP, limit("3", 10.0))
    assert await free_takes(q) == 3
    # free_takes gave up after 1 ms of the 10 s; the take waits the rest plus the margin
    assert await time_of_take(q) == pytest.approx(10.0 - 1e-3 + RESET_MARGIN_SECONDS, abs=2e-3)
    # a new window: nothing known until the next answer
    assert await free_takes(q) == 20


async def test_other_endpoints_keep_their_own_quota(autojump_clock: MockClock) -> None:
    q = quotas()
    q.observe(EP, limit("0", 10.0))
    q.observe("/other", limit("2", 10.0))
    assert await free_takes(q, "/other") == 2
    assert await free_takes(q, "/third") == 20


async def test_the_reset_is_read_on_gates_clock_and_waited_on_trios(
    autojump_clock: MockClock,
) -> None:
    q = quotas()
    q.observe(EP, limit("0", 7.0))
    assert await time_of_take(q) == pytest.approx(7.0 + RESET_MARGIN_SECONDS, abs=2e-3)


async def test_a_wait_longer_than_max_wait_is_slept_in_pieces_until_the_reset(
    autojump_clock: MockClock,
) -> None:
    q = quotas(max_wait=2.0)
    q.observe(EP, limit("0", 7.003))
    with capture_logs() as logs:
        waited = await time_of_take(q)
    assert waited == pytest.approx(7.003 + RESET_MARGIN_SECONDS, abs=2e-3)
    # the logged wait is rounded to 10 ms
    waits = [e["seconds"] for e in logs if e["event"] == "rate_limit_wait"]
    assert waits == [7.05, 5.05, 3.05, 1.05]
    assert {e["endpoint"] for e in logs} == {EP}
    assert {e["log_level"] for e in logs} == {"debug"}


async def test_a_short_wait_is_not_stretched_to_max_wait(autojump_clock: MockClock) -> None:
    q = quotas(max_wait=100.0)
    q.observe(EP, limit("0", 3.0))
    assert await time_of_take(q) == pytest.approx(3.0 + RESET_MARGIN_SECONDS, abs=2e-3)


@pytest.mark.parametrize("reset_in", [-1.0, 0.0])
async def test_a_reset_that_is_now_or_past_keeps_the_count_for_one_window(
    reset_in: float, autojump_clock: MockClock
) -> None:
    # Outside a limit Gate's reset is "just the current timestamp": it says nothing of
    # the window's end, so the count Gate gave holds for one 10 s window.
    q = quotas()
    q.observe(EP, limit("3", reset_in))
    assert await free_takes(q) == 3
    assert await time_of_take(q) == pytest.approx(MIN_REFUSAL_WAIT + RESET_MARGIN_SECONDS, abs=2e-3)


async def test_a_quota_is_pending_until_its_reset_and_the_margin_have_passed(
    autojump_clock: MockClock,
) -> None:
    q = quotas()
    assert q.pending() is False
    q.observe(EP, limit("3", 10.0))
    assert q.pending() is True
    await trio.sleep(10.0)  # at the reset: the margin is still waited
    assert q.pending() is True
    await trio.sleep(RESET_MARGIN_SECONDS)
    assert q.pending() is False


async def test_out_of_order_answers_of_one_window_keep_the_lowest_count(
    autojump_clock: MockClock,
) -> None:
    q = quotas()
    q.observe(EP, limit("2", 10.0))
    q.observe(EP, limit("9", 10.4))  # an older answer of the same window, arriving late
    assert await free_takes(q) == 2


async def test_an_answer_of_the_next_window_replaces_the_count(autojump_clock: MockClock) -> None:
    q = quotas()
    q.observe(EP, limit("2", 10.0))
    q.observe(EP, limit("9", 10.5))  # 0.5 s apart: another window
    assert await free_takes(q) == 9


async def test_a_higher_count_of_the_same_window_does_not_raise_it(
    autojump_clock: MockClock,
) -> None:
    q = quotas()
    q.observe(EP, limit("1", 10.0))
    q.observe(EP, limit("4", 9.6))
    assert await free_takes(q) == 1


async def test_a_429_with_retry_after_blocks_the_endpoint_that_long(
    autojump_clock: MockClock,
) -> None:
    q = quotas()
    with capture_logs() as logs:
        q.refused(EP, {"Retry-After": "4"})
    (event,) = logs
    assert event == {
        "event": "rate_limited",
        "log_level": "warning",
        "endpoint": EP,
        "reset": None,
        "retry_after": 4.0,
        "wait_seconds": 4.0,
    }
    assert await time_of_take(q) == pytest.approx(4.0 + RESET_MARGIN_SECONDS, abs=2e-3)
    assert await free_takes(q, "/other") == 20


async def test_a_429_with_a_reset_waits_until_the_reset(autojump_clock: MockClock) -> None:
    q = quotas()
    reset = gate_now() + 6.0
    with capture_logs() as logs:
        q.refused(EP, {"X-Gate-RateLimit-Reset-Timestamp": f"{reset:.3f}"})
    assert logs[0]["reset"] == pytest.approx(reset)
    assert logs[0]["wait_seconds"] == pytest.approx(6.0)
    assert await time_of_take(q) == pytest.approx(6.0 + RESET_MARGIN_SECONDS, abs=2e-3)


async def test_a_429_without_headers_waits_a_jittered_minimum_capped_by_max_wait(
    autojump_clock: MockClock,
) -> None:
    jitter = random.Random(3).random()
    q = quotas(seed=3)
    q.refused(EP, {})
    expected = MIN_REFUSAL_WAIT * (1.0 + 0.25 * jitter)
    assert await time_of_take(q) == pytest.approx(expected + RESET_MARGIN_SECONDS, abs=2e-3)
    capped = quotas(max_wait=0.5)
    capped.refused(EP, {"Retry-After": "30"})
    assert await time_of_take(capped) == pytest.approx(0.5 + RESET_MARGIN_SECONDS, abs=2e-3)


async def test_a_429_window_matches_the_next_answer_of_that_window(
    autojump_clock: MockClock,
) -> None:
    # The refusal's window ends at Gate's now + 4: an answer with that reset and a
    # stale higher count is the same window, so the count stays 0.
    q = quotas()
    q.refused(EP, {"Retry-After": "4"})
    q.observe(EP, limit("5", 4.2))
    assert await free_takes(q) == 0


async def test_a_429_with_an_http_date_waits_until_that_date_on_gates_clock(
    autojump_clock: MockClock,
) -> None:
    q = quotas()
    when = int(gate_now()) + 8
    q.refused(EP, {"Retry-After": email.utils.formatdate(when, usegmt=True)})
    expected = when - gate_now()
    assert await time_of_take(q) == pytest.approx(expected + RESET_MARGIN_SECONDS, abs=2e-3)
