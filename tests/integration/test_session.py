"""AccountSession against the simulator's unified WebSocket.

Rules these tests keep: everything on loopback, port 0, trio's autojump clock
for anything about time (a 45 s watchdog passes instantly), no real sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from structlog.testing import capture_logs

from collector.base.backoff import backoff_delay
from collector.config import GateSettings
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import WsFault
from collector.gate.protocol import ASSET_DETAIL, ASSETS, AuthenticationFailed
from collector.gate.signing import ApiCredentials
from collector.points.lineproto import Bundle, Point
from collector.session.core import SessionCore
from collector.session.session import AccountSession, SessionTiming
from tests.helpers import as_points

ACCOUNT = 100001
TIMING = SessionTiming(ping_interval=10, frame_timeout=45, backoff_base=1, backoff_max=8)


@dataclass
class Run:
    """A session under test and everything it sent to the sink."""

    session: AccountSession
    points: list[Point] = field(default_factory=list)
    error: BaseException | None = None
    resyncs: list[str] = field(default_factory=list)  # snapshots the session asked for
    done: trio.Event = field(default_factory=trio.Event)

    def measurement(self, name: str) -> list[Point]:
        return [p for p in self.points if p.measurement == name]


def account_key(sim: Simulator, account: int = ACCOUNT) -> ApiCredentials:
    key = sim.state.create_key(account, "gate-collector", [], [])
    return ApiCredentials(key.key, key.secret)


async def start(
    nursery: trio.Nursery,
    sim: Simulator,
    creds: ApiCredentials,
    wall_clock: Callable[[], float],
    account: int = ACCOUNT,
    buffer: int = 1000,
    consume: bool = True,
    other_accounts: frozenset[int] = frozenset(),
    **gate: Any,
) -> Run:
    settings = GateSettings(ws_url=sim.ws_url, **gate)
    send, receive = trio.open_memory_channel[Bundle](buffer)
    session = AccountSession(
        account,
        f"sub-{account}",
        creds,
        settings,
        send,
        timing=TIMING,
        wall_clock=wall_clock,
        other_accounts=other_accounts,
        on_resync=lambda _account, reason: run.resyncs.append(reason),
        rng=random.Random(account),  # backoff jitter: the same run every time
    )
    run = Run(session)

    async def drive() -> None:
        try:
            await session.run()
        except AuthenticationFailed as exc:
            run.error = exc
        finally:
            run.done.set()

    async def collect() -> None:
        async for bundle in receive:
            run.points.extend(as_points(bundle))

    nursery.start_soon(drive)
    if consume:
        nursery.start_soon(collect)
    return run


@pytest.fixture
async def sim(nursery: trio.Nursery, wall_clock: Callable[[], float]) -> Simulator:
    """The simulator with the old habits as knobs: every account changes (and so is
    pushed to) every second, and ``u`` counts up (the seed's examples)."""
    simulator = Simulator.create(accounts=12, disabled_every=4, clock=wall_clock)
    simulator.state.push_interval = 1.0
    simulator.state.change_interval = 1.0
    for account in simulator.state.accounts.values():
        account.u_mode = "counter"
    await simulator.start(nursery)
    return simulator


@pytest.fixture
async def run(sim: Simulator, nursery: trio.Nursery, wall_clock: Callable[[], float]) -> Run:
    """A session with its own key on the simulator (tests ask for the autojump clock:
    pytest-trio takes a clock only from the test's own arguments)."""
    return await start(nursery, sim, account_key(sim), wall_clock)


def detail_values(points: list[Point], currency: str) -> list[Point]:
    return [p for p in points if dict(p.tags).get("currency") == currency]


async def test_data_flows_from_both_channels(
    sim: Simulator, run: Run, autojump_clock: trio.testing.MockClock
) -> None:
    await trio.sleep(10.5)
    pushed_assets = sim.state.pushed[(ACCOUNT, ASSETS)]
    pushed_detail = sim.state.pushed[(ACCOUNT, ASSET_DETAIL)]
    assert pushed_assets >= 9 and pushed_detail >= 9
    assert len(run.measurement("gate_unified_assets")) == pushed_assets
    assert len(run.measurement("gate_unified_asset_detail")) == 3 * pushed_detail
    last_btc = detail_values(run.points, "BTC")[-1]
    sent = sim.state.last_pushed[(ACCOUNT, ASSET_DETAIL, "BTC")]
    assert last_btc.fields["available"] == sent["a"]
    assert last_btc.fields["balance"] == sent["b"]
    assert dict(last_btc.tags) == {
        "account": str(ACCOUNT),
        "account_label": f"sub-{ACCOUNT}",
        "currency": "BTC",
    }
    assets = run.measurement("gate_unified_assets")[-1]
    assert "c" not in assets.fields and "credit_available_margin" not in assets.fields
    assert set(assets.fields) >= {"unified_account_total_equity", "u", "refresh_time"}
    assert run.session.stats.connected
    assert run.session.stats.gaps == 0 and run.session.stats.reconnects == 0
    assert run.measurement("gate_sequence_gap") == []


async def test_pings_keep_an_idle_session_alive(
    sim: Simulator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
) -> None:
    sim.state.push_interval = 10_000  # no data at all: only pongs arrive
    run = await start(nursery, sim, account_key(sim), wall_clock)
    await trio.sleep(300)
    assert run.session.stats.reconnects == 0
    assert run.session.stats.frames >= 30  # 2 acks + a pong every 10 s


async def test_a_dropped_connection_reconnects_and_data_resumes(
    sim: Simulator, run: Run, autojump_clock: trio.testing.MockClock
) -> None:
    await trio.sleep(3.5)
    sim.state.accounts[ACCOUNT].ws_faults.append(WsFault("drop"))
    await trio.sleep(10)
    assert run.session.stats.reconnects == 1
    assert run.session.stats.connected
    pushed = sim.state.pushed[(ACCOUNT, ASSET_DETAIL)]
    assert len(run.measurement("gate_unified_asset_detail")) == 3 * pushed
    reconnect_gaps = run.measurement("gate_sequence_gap")
    assert {dict(p.tags)["reason"] for p in reconnect_gaps} == {"reconnect"}
    assert {dict(p.tags)["channel"] for p in reconnect_gaps} == {ASSETS, ASSET_DETAIL}
    assert all(p.fields["missed"] == 0 for p in reconnect_gaps)  # Gate's counter went on


async def test_silence_triggers_the_watchdog(
    sim: Simulator, run: Run, autojump_clock: trio.testing.MockClock
) -> None:
    await trio.sleep(2.5)
    sim.state.accounts[ACCOUNT].ws_faults.append(WsFault("silence", seconds=1000))
    silent_from = trio.current_time()
    with trio.fail_after(120):
        while run.session.stats.reconnects == 0:
            await trio.sleep(1)
    waited = trio.current_time() - silent_from
    assert 44 <= waited <= 48
    before = len(run.points)
    await trio.sleep(15)
    assert run.session.stats.connected
    assert len(run.points) > before


async def test_a_deadline_that_raises_ends_the_connection_and_the_session_reconnects(
    sim: Simulator,
    run: Run,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await trio.sleep(2.5)
    due, failed = SessionCore.due, []

    def due_failing_once(core: SessionCore, now: float, wall: int) -> list[bytes]:
        if not failed:
            failed.append(now)
            raise RuntimeError("a bug")
        return due(core, now, wall)

    monkeypatch.setattr(SessionCore, "due", due_failing_once)
    with capture_logs() as logs:
        await trio.sleep(15)  # the ping at 10 s is the next deadline
    assert len(failed) == 1
    assert run.session.stats.reconnects == 1 and run.session.stats.connected
    errors = [e for e in logs if e["log_level"] == "error"]
    assert errors == [
        {
            "event": "session_deadline_failed",
            "account": ACCOUNT,
            "error": "RuntimeError('a bug')",
            "log_level": "error",
        }
    ]
    reconnect = next(e for e in logs if e["event"] == "session_reconnect")
    assert reconnect["reason"] == "deadline failed (RuntimeError)"
    before = len(run.points)
    await trio.sleep(5)
    assert len(run.points) > before  # pings and data again


async def test_an_upgrade_event_reconnects(
    sim: Simulator, run: Run, autojump_clock: trio.testing.MockClock
) -> None:
    await trio.sleep(2.5)
    sim.state.accounts[ACCOUNT].ws_faults.append(WsFault("upgrade"))
    await trio.sleep(10)
    assert run.session.stats.reconnects == 1
    assert sim.state.ws_events["subscribe"] == 4


async def test_malformed_and_error_frames_are_counted_and_the_session_lives_on(
    sim: Simulator, run: Run, autojump_clock: trio.testing.MockClock
) -> None:
    await trio.sleep(2.5)
    faults = sim.state.accounts[ACCOUNT].ws_faults
    faults.extend([WsFault("malformed"), WsFault("error"), WsFault("malformed")])
    await trio.sleep(10)
    stats = run.session.stats
    assert stats.frames_invalid == 2
    assert stats.errors == 1
    assert stats.reconnects == 0 and stats.connected
    pushed = sim.state.pushed[(ACCOUNT, ASSET_DETAIL)]
    assert len(run.measurement("gate_unified_asset_detail")) == 3 * pushed


async def test_a_sequence_gap_is_recorded_and_asks_for_one_snapshot(
    sim: Simulator, run: Run, autojump_clock: trio.testing.MockClock
) -> None:
    await trio.sleep(3.5)
    sim.state.accounts[ACCOUNT].ws_faults.append(WsFault("gap", channel=ASSET_DETAIL, count=4))
    await trio.sleep(5)
    gaps = run.measurement("gate_sequence_gap")
    assert len(gaps) == 1
    assert dict(gaps[0].tags) == {
        "account": str(ACCOUNT),
        "channel": ASSET_DETAIL,
        "reason": "sequence",
    }
    assert gaps[0].fields["missed"] == 4
    assert gaps[0].fields["received"] == gaps[0].fields["expected"] + 4
    assert run.session.stats.gaps == 1
    assert sim.state.ws_events["subscribe"] == 2  # no resubscribe: a snapshot resyncs
    assert run.resyncs == ["subscribed", "gap"]
    pushed = sim.state.pushed[(ACCOUNT, ASSET_DETAIL)]
    assert len(run.measurement("gate_unified_asset_detail")) == 3 * pushed


async def test_identity_mode_checks_the_account_and_writes_everything(
    sim: Simulator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
) -> None:
    sim.state.accounts[ACCOUNT].u_mode = "identity"
    run = await start(nursery, sim, account_key(sim), wall_clock)
    await trio.sleep(10.5)
    assert run.measurement("gate_sequence_gap") == []
    assert all(p.fields["u"] == ACCOUNT for p in run.points)
    assert len(run.measurement("gate_unified_assets")) == sim.state.pushed[(ACCOUNT, ASSETS)]


async def test_a_key_of_another_account_is_rejected_and_flagged(
    sim: Simulator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
) -> None:
    # The stored key belongs to 100002 but is used for 100001's session.
    sim.state.accounts[100002].u_mode = "identity"
    sim.state.accounts[ACCOUNT].u_mode = "identity"
    others = frozenset(sim.state.accounts) - {ACCOUNT}
    run = await start(nursery, sim, account_key(sim, 100002), wall_clock, other_accounts=others)
    await trio.sleep(5.5)
    assert run.points == []
    assert run.session.stats.frames_rejected >= 8


async def test_a_revoked_key_is_reported_and_not_hammered(
    sim: Simulator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
) -> None:
    creds = account_key(sim)
    run = await start(nursery, sim, creds, wall_clock)
    await trio.sleep(2.5)
    sim.state.revoke(creds.key)
    with trio.fail_after(60):
        await run.done.wait()
    assert isinstance(run.error, AuthenticationFailed)
    assert "INVALID_KEY" in run.error.reason
    await trio.sleep(600)
    assert sim.state.ws_events["auth_refused"] <= 2


async def test_a_wrong_secret_fails_at_once(
    sim: Simulator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
) -> None:
    creds = account_key(sim)
    run = await start(nursery, sim, ApiCredentials(creds.key, "0" * 64), wall_clock)
    with trio.fail_after(5):
        await run.done.wait()
    assert isinstance(run.error, AuthenticationFailed)
    assert "INVALID_SIGNATURE" in run.error.reason
    assert "0" * 64 not in str(run.error)


async def test_clock_outside_the_window_is_an_auth_failure(
    sim: Simulator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
) -> None:
    run = await start(nursery, sim, account_key(sim), lambda: wall_clock() - 120)
    with trio.fail_after(5):
        await run.done.wait()
    assert isinstance(run.error, AuthenticationFailed)
    assert "REQUEST_EXPIRED" in run.error.reason


async def test_unreachable_gate_backs_off_exponentially(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
    sim: Simulator,
) -> None:
    settings = GateSettings(ws_url="ws://127.0.0.1:1/v4/ws/unified")
    send, _receive = trio.open_memory_channel[Bundle](10)
    session = AccountSession(
        ACCOUNT,
        "x",
        ApiCredentials("k", "s"),
        settings,
        send,
        timing=TIMING,
        wall_clock=wall_clock,
        rng=random.Random(7),
    )
    with trio.move_on_after(60):
        await session.run()
    # 0.5-1, 1-2, 2-4, then 4-8 s each: about 10 attempts in a minute, not thousands.
    assert session.stats.reconnects == attempts_within(60, TIMING, random.Random(7))
    assert not session.stats.connected


async def test_a_full_channel_applies_back_pressure(
    sim: Simulator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
) -> None:
    send, receive = trio.open_memory_channel[Bundle](2)
    settings = GateSettings(ws_url=sim.ws_url)
    session = AccountSession(
        ACCOUNT, "x", account_key(sim), settings, send, timing=TIMING, wall_clock=wall_clock
    )
    nursery.start_soon(session.run)
    await trio.sleep(20)
    # Two bundles fill the channel; the session waits with the third and reads no further.
    channel = send.statistics()
    assert (channel.current_buffer_used, channel.tasks_waiting_send) == (2, 1)
    held = (session.stats.frames, session.stats.points)
    await trio.sleep(20)
    assert (session.stats.frames, session.stats.points) == held
    # Nothing was lost while it waited: the three bundles hold every point it counted.
    with trio.fail_after(5):
        bundles = [await receive.receive() for _ in range(3)]
        assert sum(len(bundle) for bundle in bundles) == held[1] > 0
        while session.stats.frames == held[0]:  # room again: it reads on
            await trio.sleep(0.5)


async def test_tls_with_a_private_ca(
    nursery: trio.Nursery,
    tmp_path: Path,
    wall_clock: Callable[[], float],
) -> None:
    ca = trustme.CA()
    server_context = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    sim = Simulator.create(accounts=2, clock=wall_clock)
    sim.ssl_context = server_context
    sim.state.push_interval = sim.state.change_interval = 0.05
    await sim.start(nursery)
    assert sim.ws_url.startswith("wss://")
    run = await start(nursery, sim, account_key(sim), wall_clock, ca_file=str(ca_file))
    with trio.fail_after(10):
        while len(run.points) < 6:
            await trio.sleep(0.05)
    assert run.session.stats.connected


async def test_tls_refuses_an_unknown_ca(
    nursery: trio.Nursery,
    wall_clock: Callable[[], float],
) -> None:
    import ssl

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    sim = Simulator.create(accounts=2, clock=wall_clock)
    sim.ssl_context = server_context
    await sim.start(nursery)
    with capture_logs() as logs:
        run = await start(nursery, sim, account_key(sim), wall_clock)  # system CAs only
        with trio.fail_after(10):
            while run.session.stats.reconnects == 0:
                await trio.sleep(0.05)
    # Refused because of the certificate, not for any other reason.
    reasons = [entry["reason"] for entry in logs if entry["event"] == "session_reconnect"]
    assert reasons and "CERTIFICATE_VERIFY_FAILED" in reasons[0]
    assert not run.points and not run.session.stats.connected


@pytest.fixture
async def mute_gate(nursery: trio.Nursery) -> str:
    """A server that accepts TCP and then says nothing: no WebSocket handshake ever."""

    async def mute(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, mute, 0)
    return f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/v4/ws/unified"


def attempts_within(seconds: float, timing: SessionTiming, rng: random.Random) -> int:
    """Connection attempts that fail at once and back off with ``rng``, in ``seconds``."""
    attempts, elapsed = 0, 0.0
    while elapsed < seconds:
        attempts += 1
        elapsed += backoff_delay(attempts, timing.backoff_base, timing.backoff_max, rng)
    return attempts


def unanswered_session(
    url: str, wall_clock: Callable[[], float], account: int = ACCOUNT, **kwargs: Any
) -> AccountSession:
    send, _receive = trio.open_memory_channel[Bundle](10)
    return AccountSession(
        account,
        "x",
        ApiCredentials("k", "s"),
        GateSettings(ws_url=url),
        send,
        wall_clock=wall_clock,
        **kwargs,
    )


async def test_a_handshake_that_never_completes_times_out_and_retries(
    mute_gate: str, autojump_clock: trio.testing.MockClock, wall_clock: Callable[[], float]
) -> None:
    timing = SessionTiming(connect_timeout=5, backoff_base=1, backoff_max=2)
    session = unanswered_session(mute_gate, wall_clock, timing=timing, rng=random.Random(7))
    with trio.move_on_after(60):
        await session.run()
    # Each attempt gives up after 5 s, waits 0.5-2 s, tries again: not stuck on the first.
    rng, attempts, elapsed = random.Random(7), 0, 5.0
    while elapsed < 60:
        attempts += 1
        elapsed += backoff_delay(attempts, 1, 2, rng) + 5
    assert session.stats.reconnects == attempts


async def test_sessions_sharing_a_connect_limiter_handshake_one_at_a_time(
    mute_gate: str, autojump_clock: trio.testing.MockClock, wall_clock: Callable[[], float]
) -> None:
    limiter = trio.CapacityLimiter(1)
    timing = SessionTiming(connect_timeout=5, backoff_base=0.1, backoff_max=0.1)
    sessions = [
        unanswered_session(
            mute_gate, wall_clock, ACCOUNT + i, timing=timing, connect_limiter=limiter
        )
        for i in range(3)
    ]
    with trio.move_on_after(31):
        async with trio.open_nursery() as inner:
            for session in sessions:
                inner.start_soon(session.run)
    # One 5 s handshake at a time: 6 attempts in 31 s for all three together.
    assert sum(s.stats.reconnects for s in sessions) == 6


@pytest.mark.parametrize(("code", "channel"), [(2, ASSETS), (3, ASSET_DETAIL)])
async def test_a_refused_subscription_is_retried_until_gate_accepts_it(
    sim: Simulator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
    code: int,
    channel: str,
) -> None:
    account = sim.state.accounts[ACCOUNT]
    account.refuse[channel] = code
    run = await start(nursery, sim, account_key(sim), wall_clock)
    await trio.sleep(30)
    stats = run.session.stats
    assert sim.state.ws_events["subscribe_refused"] >= 3  # retried, with backoff
    assert not stats.connected  # pongs and the other channel's data do not count
    assert stats.subscription == "refused" and f"code {code}" in stats.subscription_reason
    refused_before = sim.state.ws_events["subscribe_refused"]
    await trio.sleep(60)
    assert sim.state.ws_events["subscribe_refused"] - refused_before <= 3  # backoff grows
    del account.refuse[channel]
    await trio.sleep(65)  # the backoff is capped at 60 s
    assert stats.connected and stats.subscription == "active"
    assert run.resyncs[-1] == "subscribed"
    pushed = sim.state.pushed[(ACCOUNT, channel)]
    await trio.sleep(5)
    assert sim.state.pushed[(ACCOUNT, channel)] >= pushed + 4  # data flows


async def test_a_permission_refusal_is_loud_and_not_a_key_problem(
    sim: Simulator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    wall_clock: Callable[[], float],
) -> None:
    sim.state.accounts[ACCOUNT].refuse[ASSET_DETAIL] = 4
    with capture_logs() as logs:
        run = await start(nursery, sim, account_key(sim), wall_clock)
        # Retried every 300 s: looked at between two retries (at 900 s the third goes out
        # and the state is "pending" until Gate refuses it again).
        await trio.sleep(890)
    assert run.error is None and not run.done.is_set()  # no AuthenticationFailed
    assert run.session.stats.subscription == "forbidden"
    assert "FORBIDDEN" in run.session.stats.subscription_reason
    loud = [e for e in logs if e["event"] == "subscription_forbidden"]
    assert len(loud) == 1 and loud[0]["log_level"] == "error"
    assert loud[0]["account"] == ACCOUNT
    assert 2 <= sim.state.ws_events["subscribe_refused"] <= 5  # slow retries, no storm


async def test_the_system_shaped_upgrade_notice_reconnects(
    sim: Simulator, run: Run, autojump_clock: trio.testing.MockClock
) -> None:
    await trio.sleep(2.5)
    sim.state.accounts[ACCOUNT].ws_faults.append(WsFault("system_upgrade"))
    await trio.sleep(10)
    assert run.session.stats.reconnects == 1
    assert run.resyncs == ["subscribed", "subscribed"]  # one snapshot per (re)connect
