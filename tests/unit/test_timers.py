"""Rules of collector.base.timers that a mutation would break unseen (see tests/MUTATION.md):
ties, the runner woken from an empty heap, run_beside's result and errors."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from collector.base.timers import Timer, Timers, run_beside


def test_a_timer_is_armed_uncancelled_and_cancel_marks_it() -> None:
    def callback() -> None:
        return None

    timer = Timer(2.5, callback)
    assert (timer.when, timer.callback, timer.cancelled) == (2.5, callback, False)
    timer.cancel()
    assert timer.cancelled is True
    armed = Timers().call_at(4.0, callback)
    assert (armed.when, armed.callback, armed.cancelled) == (4.0, callback, False)


def test_ties_fire_in_the_order_they_were_armed() -> None:
    timers, fired = Timers(), []
    for name in "abcde":
        timers.call_at(1.0, lambda name=name: fired.append(name))  # type: ignore[misc]
    assert len(timers) == 5 and timers.fired == 0
    timers.fire_due(0.999)
    assert fired == []
    timers.fire_due(1.0)
    assert fired == list("abcde") and timers.fired == 5 and len(timers) == 0


def test_a_callback_that_raises_is_logged_and_the_others_fire_on() -> None:
    timers, fired = Timers(), []

    def broken() -> None:
        raise ValueError("a bug in one session " + "x" * 400)

    timers.call_at(1.0, lambda: fired.append("before"))
    timers.call_at(1.0, broken)
    timers.call_at(1.0, lambda: fired.append("after"))
    with capture_logs() as logs:
        timers.fire_due(1.0)
    assert fired == ["before", "after"] and timers.fired == 3 and len(timers) == 0
    assert logs == [
        {
            "event": "timer_callback_failed",
            "error": repr(ValueError("a bug in one session " + "x" * 400))[:300],
            "log_level": "error",
        }
    ]


async def test_a_deadline_armed_while_the_runner_waits_on_nothing_wakes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers, fired = Timers(), trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        await trio.sleep(1)  # the runner now waits with an empty heap
        start = trio.current_time()
        timers.call_at(start + 5, fired.set)
        with trio.fail_after(100):
            await fired.wait()
        assert trio.current_time() - start == 5
        nursery.cancel_scope.cancel()


async def test_run_beside_drives_the_timers_and_returns_when_the_body_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers, times = Timers(), []

    async def body() -> None:
        start = trio.current_time()
        done = trio.Event()
        timers.call_at(start + 3, lambda: (times.append(trio.current_time() - start), done.set()))
        with trio.fail_after(100):
            await done.wait()

    with trio.fail_after(200):
        await run_beside(timers, body)
    assert times == [3] and timers.fired == 1


async def test_run_beside_raises_the_bodys_error_bare(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def body() -> None:
        await trio.sleep(1)
        raise ValueError("body failed")

    with trio.fail_after(100), pytest.raises(ValueError, match=r"^body failed$") as caught:
        await run_beside(Timers(), body)
    assert type(caught.value) is ValueError
