"""Gate's per-IP connection limit (issue 23 item 5), against the simulator's cap.

The simulator refuses a handshake over ``max_connections_per_ip`` with 429 and
counts the most connections one IP held at once. Autojump clock: rotations every
two minutes pass instantly; every wait has a deadline.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from collector.app.check import CheckFailed, gate_websocket
from collector.config import GateSettings, Settings
from collector.devtools.simulator import Simulator
from collector.gate.signing import ApiCredentials
from collector.points import schema
from collector.points.lineproto import Bundle
from collector.session.session import AccountSession, SessionTiming
from collector.supervisor.connections import ConnectionBudget
from tests.helpers import Running, Supervise, busy_simulator, enabled, every_session_connected

ACCOUNTS = 6
ROTATE_AFTER = 120.0
RUN = 900.0
PUSH_INTERVAL = 5.0
IP = "127.0.0.1"


@pytest.fixture
async def csim(nursery: trio.Nursery, wall_clock: Callable[[], float]) -> Simulator:
    """Six accounts that change every 5 s, behind a cap of six connections per IP."""
    simulator = await busy_simulator(nursery, wall_clock, ACCOUNTS, PUSH_INTERVAL)
    simulator.state.max_connections_per_ip = ACCOUNTS
    return simulator


def largest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch in [start, end] without a point."""
    marks = [start, *(t for t in times if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(marks))


async def rotate_at_the_limit(
    csim: Simulator, supervise: Supervise, limit: int
) -> tuple[Running, dict[int, set[str]], float]:
    """Run a supervisor at ``limit`` for RUN seconds once every session is connected;
    the keys each account used, and when that steady run began."""
    running = await supervise(
        csim,
        gate={"max_connections_per_ip": limit},
        accounts={"key_rotate_after": ROTATE_AFTER},
    )
    keys: dict[int, set[str]] = {a: set() for a in enabled(csim)}
    # the first keys wait out Gate's activation too
    await every_session_connected(running.supervisor, 600)
    start = trio.current_time()
    with trio.fail_after(RUN + 60):
        while trio.current_time() - start < RUN:
            for account in keys:
                stored = running.store.get(account)
                if stored is not None:
                    keys[account].add(stored.key)
            await trio.sleep(1.0)
    return running, keys, start


@pytest.mark.parametrize("activation", [0.0, 60.0])
async def test_at_a_limit_of_one_connection_per_account_every_account_rotates_and_keeps_its_data(
    csim: Simulator,
    supervise: Supervise,
    autojump_clock: trio.testing.MockClock,
    activation: float,
) -> None:
    csim.state.key_activation_delay = activation  # Gate refuses a new key this long
    with capture_logs() as logs:
        running, keys, steady = await rotate_at_the_limit(csim, supervise, limit=ACCOUNTS)
    stats = running.supervisor.stats
    rotations = [a for a, used in keys.items() if len(used) >= 3]
    print(
        f"activation {activation:g} s, limit {ACCOUNTS}, {ACCOUNTS} accounts, "
        f"rotate after {ROTATE_AFTER:g} s, {RUN:g} s: "
        f"{stats.key_rotations} rotations ({stats.key_rotations_break_before_make} break "
        f"before make), peak {csim.state.ws_peak_per_ip[IP]} connections, "
        f"{csim.state.ws_refused_over_cap} handshakes refused"
    )
    # Every account rotated, more than once, each time break before make.
    assert sorted(rotations) == sorted(keys)
    assert stats.key_rotations >= 2 * ACCOUNTS
    assert stats.key_rotations_break_before_make == stats.key_rotations
    fields = running.supervisor.stats_fields()
    assert fields[schema.STAT_KEY_ROTATIONS_BREAK_BEFORE_MAKE] == stats.key_rotations
    loud = [e for e in logs if e["event"] == "key_rotated_break_before_make"]
    assert len(loud) == stats.key_rotations and all(e["limit"] == ACCOUNTS for e in loud)
    # A REST snapshot with the new key bridged each break: the break waited for it.
    bridged = [e for e in logs if e["event"] == "snapshot" and e["reason"] == "rotation"]
    assert len(bridged) == stats.key_rotations
    # Never over Gate's limit: the simulator saw at most six at once, refused none.
    assert csim.state.ws_peak_per_ip[IP] == ACCOUNTS
    assert csim.state.ws_refused_over_cap == 0
    # Every account's data kept arriving: no stretch of three pushes without a point.
    end = trio.current_time()
    gaps = {a: largest_gap(running.arrivals[str(a)], steady, end) for a in keys}
    print(f"longest stretch without a point, per account: {max(gaps.values()):.1f} s")
    for account in keys:
        assert gaps[account] < 3 * PUSH_INTERVAL, (account, gaps[account])
        # the replaced keys were retired once their successors worked (a rotation may be
        # under way at the end: its new key stored, the old one still in use)
        left = {k.key for k in csim.state.keys_of(account)}
        assert running.key_of(account) in left and len(left) <= 2
    assert csim.state.deleted_in_use == {}


async def test_with_a_spare_connection_rotation_stays_make_before_break(
    csim: Simulator,
    supervise: Supervise,
    autojump_clock: trio.testing.MockClock,
) -> None:
    csim.state.max_connections_per_ip = ACCOUNTS + 1
    running, keys, _ = await rotate_at_the_limit(csim, supervise, limit=ACCOUNTS + 1)
    stats = running.supervisor.stats
    assert all(len(used) >= 3 for used in keys.values())
    # One spare: one successor at a time beside its old session, the rest break first.
    assert 0 < stats.key_rotations_break_before_make < stats.key_rotations
    assert csim.state.ws_peak_per_ip[IP] == ACCOUNTS + 1
    assert csim.state.ws_refused_over_cap == 0


def test_the_budget_gives_no_extra_place_past_the_limit() -> None:
    budget = ConnectionBudget(lambda: 3)
    budget.slots["a"] = 2
    assert budget.try_extra("a")
    assert not budget.try_extra("a")  # 2 slots + 1 extra = the limit
    assert budget.try_extra("b") and budget.try_extra("b") and budget.try_extra("b")
    assert not budget.try_extra("b")
    budget.release_extra("a")
    assert budget.in_use("a") == 2 and budget.try_extra("a")
    assert (budget.in_use("a"), budget.in_use("b")) == (3, 3)


async def test_check_says_when_gate_refuses_its_handshake_for_the_limit(
    csim: Simulator, autojump_clock: trio.testing.MockClock
) -> None:
    csim.state.max_connections_per_ip = 0  # a collector on this IP holds them all
    settings = Settings.model_validate({"gate": {"ws_url": csim.ws_url}})
    with pytest.raises(CheckFailed) as info:
        await gate_websocket(settings)
    assert "refused the handshake" in str(info.value)
    assert "with 429" in str(info.value) and "TOO_MANY_REQUESTS" in str(info.value)
    assert "gate.max_connections_per_ip" in str(info.value)
    assert csim.state.ws_refused_over_cap == 1


async def test_a_session_refused_at_the_limit_retries_and_says_why(
    csim: Simulator,
    nursery: trio.Nursery,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    # trio-websocket raises the refusal in its reader task: it must not tear down
    # the session's nursery (and the supervisor's), only fail this handshake.
    csim.state.max_connections_per_ip = 0
    key = csim.state.create_key(100001, "k", [], [])
    send, receive = trio.open_memory_channel[Bundle](100)
    session = AccountSession(
        100001,
        "sub",
        ApiCredentials(key.key, key.secret),
        GateSettings(ws_url=csim.ws_url),
        send,
        timing=SessionTiming(backoff_base=1, backoff_max=8),
        wall_clock=wall_clock,
    )
    with capture_logs() as logs, trio.move_on_after(60):
        await session.run()
    reconnects = [e for e in logs if e["event"] == "session_handshake_refused"]
    assert len(reconnects) >= 5 and session.stats.reconnects == len(reconnects)
    assert all(e["status"] == 429 and "connection limit" in e["hint"] for e in reconnects)
    # each refusal was one reconnect (the last may be cut by the deadline)
    assert csim.state.ws_refused_over_cap - len(reconnects) in (0, 1)
    csim.state.max_connections_per_ip = 1  # the address has room again
    async with trio.open_nursery() as inner:
        inner.start_soon(session.run)
        with trio.fail_after(30):
            while not session.stats.connected:
                await trio.sleep(0.5)
        inner.cancel_scope.cancel()
    receive.close()


async def test_a_new_ws_url_reconnects_every_session_without_going_over_the_limit(
    csim: Simulator,
    supervise: Supervise,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
) -> None:
    running = await supervise(csim, gate={"max_connections_per_ip": ACCOUNTS})
    supervisor = running.supervisor
    await every_session_connected(supervisor, 120)
    opened = csim.state.ws_events["subscribe"]
    moved = Settings.model_validate(
        {
            "gate": {
                "rest_url": csim.rest_url,
                "ws_url": csim.ws_url + "?moved=1",  # the same server under a new URL
                "max_connections_per_ip": ACCOUNTS,
            },
            "state": {"dir": str(tmp_path)},
        }
    )
    supervisor.reload(moved)
    await trio.sleep(1)
    await every_session_connected(supervisor, 120)
    assert csim.state.ws_events["subscribe"] >= opened + 2 * ACCOUNTS  # every one again
    assert csim.state.ws_peak_per_ip[IP] == ACCOUNTS
    assert csim.state.ws_refused_over_cap == 0


async def test_a_successor_gate_refuses_beside_the_old_session_falls_back_to_break_before_make(
    csim: Simulator,
    supervise: Supervise,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The collector is told 7, but something else on this IP holds one of Gate's 7
    # connections: every successor beside its old session is refused (429).
    with capture_logs() as logs:
        running, keys, _ = await rotate_at_the_limit(csim, supervise, limit=ACCOUNTS + 1)
    stats = running.supervisor.stats
    stalled = [e for e in logs if e["event"] == "key_rotate_successor_stalled"]
    done = Counter(
        e["account"] for e in logs if e["event"] in ("key_rotated", "key_rotated_break_before_make")
    )
    print(
        f"told {ACCOUNTS + 1}, Gate allows {ACCOUNTS}: {stats.key_rotations} rotations "
        f"({stats.key_rotations_break_before_make} break before make), {len(stalled)} "
        f"successors stalled, {csim.state.ws_refused_over_cap} handshakes refused, "
        f"fewest per account {min(done.values(), default=0)}"
    )
    # No account's rotation hangs on a successor Gate keeps refusing: each completed
    # rotations all along (a stalled successor falls back after its wait).
    assert set(done) == set(keys) and min(done.values()) >= 2, done
    assert all(e["wait_seconds"] == 360.0 for e in stalled)
    assert csim.state.ws_peak_per_ip[IP] == ACCOUNTS
    await every_session_connected(running.supervisor, 300)  # each ends with a working session
    assert csim.state.deleted_in_use == {}
