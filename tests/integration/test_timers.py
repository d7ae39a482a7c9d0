"""The shared deadline task: order, cancellation, re-arming, waking for an earlier one,
and sessions whose pings and watchdogs it drives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from pydantic import ValidationError

from collector.base.timers import Timers
from collector.config import ConfigError, GateSettings, load_settings
from collector.devtools.simulator import Simulator
from collector.gate.signing import ApiCredentials
from collector.points.lineproto import Bundle
from collector.session.session import AccountSession, SessionTiming


def test_due_callbacks_fire_in_time_order_and_cancelled_ones_never() -> None:
    timers, fired = Timers(), []
    timers.call_at(3.0, lambda: fired.append("c"))
    timers.call_at(1.0, lambda: fired.append("a"))
    dropped = timers.call_at(2.0, lambda: fired.append("x"))
    timers.call_at(2.0, lambda: fired.append("b"))
    dropped.cancel()
    timers.fire_due(2.5)
    assert fired == ["a", "b"]
    assert len(timers) == 1 and timers.fired == 2
    timers.fire_due(3.0)
    assert fired == ["a", "b", "c"] and len(timers) == 0


async def test_one_task_drives_many_repeating_deadlines(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers = Timers()
    ticks: dict[int, list[float]] = {n: [] for n in range(100)}

    def tick(n: int) -> None:
        ticks[n].append(trio.current_time())
        if len(ticks[n]) < 3:
            timers.call_at(trio.current_time() + 15, lambda: tick(n))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        start = trio.current_time()
        for n in range(100):
            timers.call_at(start + 15 + n / 100, lambda n=n: tick(n))  # type: ignore[misc]
        with trio.fail_after(100):
            while any(len(t) < 3 for t in ticks.values()):
                await trio.sleep(1)
        nursery.cancel_scope.cancel()
    for n, times in ticks.items():
        assert [round(t - start, 6) for t in times] == [
            round(15 + n / 100 + 15 * k, 6) for k in range(3)
        ]
    assert timers.fired == 300


async def test_an_earlier_deadline_wakes_the_sleeping_runner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers, fired = Timers(), trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        start = trio.current_time()
        timers.call_at(start + 1000, lambda: None)
        await trio.sleep(1)  # the runner now sleeps until start + 1000
        timers.call_at(start + 5, fired.set)
        with trio.fail_after(100):
            await fired.wait()
        assert trio.current_time() - start == 5
        nursery.cancel_scope.cancel()


async def test_sessions_sharing_one_timer_task_ping_and_stay_up(
    sim: Simulator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
) -> None:
    sim.state.push_interval = 10_000  # no data at all: only pongs keep the sockets alive
    timers = Timers()
    nursery.start_soon(timers.run)
    accounts = [a for a, acc in sim.state.accounts.items() if acc.status == "enabled"][:4]
    settings = GateSettings(ws_url=sim.ws_url)
    send, _receive = trio.open_memory_channel[Bundle](100)
    sessions = []
    for account in accounts:
        key = sim.state.create_key(account, "gate-collector", [], [])
        session = AccountSession(
            account,
            f"sub-{account}",
            ApiCredentials(key.key, key.secret),
            settings,
            send,
            timing=SessionTiming(ping_interval=10, frame_timeout=45),
            wall_clock=wall_clock,
            timers=timers,
        )
        sessions.append(session)
        nursery.start_soon(session.run)
    await trio.sleep(300)
    for session in sessions:
        assert session.stats.reconnects == 0
        assert session.stats.frames >= 30  # 2 acks + a pong every 10 s
    # Every ping (29 each) came from the one shared task.
    assert timers.fired >= len(sessions) * 29
    assert len(timers) == len(sessions)  # one deadline each: the next of ping and watchdog


def test_the_ping_interval_stays_within_gates_range() -> None:
    assert GateSettings(ping_interval=5).ping_interval == 5
    for wrong in (4.9, 26):
        with pytest.raises(ValidationError, match="ping_interval"):
            GateSettings(ping_interval=wrong)


def test_a_ping_interval_outside_gates_range_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text("[gate]\nping_interval = 30\n")
    with pytest.raises(
        ConfigError, match=r"gate\.ping_interval: .* less than or equal to 25; got 30"
    ):
        load_settings(path, {})
    assert load_settings(None, {}).gate.ping_interval == 15
