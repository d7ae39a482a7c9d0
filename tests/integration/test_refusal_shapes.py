"""Gate's refusal shapes against the simulator (issue 23 item 6): what a session and
the REST client do with each, on real loopback servers.

Autojump clock (the simulator shares the wall clock that moves with it); every
wait has a deadline.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from pydantic import ValidationError
from structlog.testing import capture_logs
from trio_websocket import open_websocket_url

from collector.config import ConfigError, GateSettings, load_settings
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import Fault
from collector.gate.broker import BrokerClient
from collector.gate.errors import AuthError, Refusal, refusal_kind
from collector.gate.protocol import ASSET_DETAIL, ASSETS, Ack, Error, ErrorKind, parse, subscribe
from collector.gate.signing import ApiCredentials
from collector.gate.snapshot import SnapshotClient
from collector.points.lineproto import Bundle
from collector.session.core import LOUD_AFTER
from collector.session.session import AccountSession, AuthenticationFailed, SessionTiming

ACCOUNT = 100001
TIMING = SessionTiming(ack_timeout=5, resubscribe_base=1, resubscribe_max=8)
_BUFFERS: list[trio.MemoryReceiveChannel[Bundle]] = []  # kept open while a test runs


@pytest.fixture
async def wsim(nursery: trio.Nursery, wall_clock: Callable[[], float]) -> Simulator:
    simulator = Simulator.create(accounts=2, clock=wall_clock)
    simulator.state.push_interval = 1.0
    simulator.state.change_interval = 1.0
    await simulator.start(nursery)
    return simulator


def session(
    sim: Simulator, creds: ApiCredentials, wall_clock: Callable[[], float]
) -> AccountSession:
    # These tests look at the session's state, not its points: they stay buffered.
    send, receive = trio.open_memory_channel[Bundle](100_000)
    _BUFFERS.append(receive)
    return AccountSession(
        ACCOUNT,
        "sub",
        creds,
        GateSettings(ws_url=sim.ws_url),
        send,
        timing=TIMING,
        wall_clock=wall_clock,
        rng=random.Random(1),
    )


def good_key(sim: Simulator) -> ApiCredentials:
    key = sim.state.create_key(ACCOUNT, "gate-collector", [], [])
    return ApiCredentials(key.key, key.secret)


async def run_for(s: AccountSession, seconds: float) -> AuthenticationFailed | None:
    """Run the session for ``seconds``; the AuthenticationFailed it raised, if any."""
    with trio.move_on_after(seconds):
        try:
            await s.run()
        except AuthenticationFailed as exc:
            return exc
    return None


@pytest.mark.parametrize("shape", ["code4", "ws_auth"])
async def test_a_bad_key_is_an_auth_failure_in_both_of_gates_shapes(
    wsim: Simulator,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
    shape: str,
) -> None:
    wsim.state.ws_auth_shape = shape
    key = good_key(wsim)
    forged = ApiCredentials(key.key, "0" * 64)  # a signature Gate cannot match
    failed = await run_for(session(wsim, forged, wall_clock), 30)
    assert failed is not None
    assert refusal_kind(failed.reason) is Refusal.KEY
    assert "INVALID_SIGNATURE" in failed.reason
    assert ("ws_auth" in failed.reason) is (shape == "ws_auth")


async def test_a_code_3_service_error_mentioning_auth_is_retried_not_a_dead_key(
    wsim: Simulator,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    account = wsim.state.accounts[ACCOUNT]
    account.refuse[ASSETS] = 3
    account.refuse_text[ASSETS] = "AUTH service temporarily unavailable"
    s = session(wsim, good_key(wsim), wall_clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_for, s, 120)
        await trio.sleep(30)
        assert s.stats.subscription == "refused"
        assert wsim.state.ws_events["subscribe_refused"] >= 2
        del account.refuse[ASSETS]
        await trio.sleep(30)
        assert s.stats.connected and s.stats.subscription == "active"
        nursery.cancel_scope.cancel()
    assert s.stats.refusals_unexplained == 0  # code 3 is Gate's, not ours


async def test_unlabelled_code_2_refusals_keep_retrying_and_turn_loud_once(
    wsim: Simulator,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    account = wsim.state.accounts[ACCOUNT]
    account.refuse[ASSET_DETAIL] = 2
    account.refuse_text[ASSET_DETAIL] = "auth faild , auth data : &{{87260}}"  # no label
    s = session(wsim, good_key(wsim), wall_clock)
    with capture_logs() as logs:
        failed = await run_for(s, 300)
    assert failed is None  # never taken for a dead key
    refused = wsim.state.ws_events["subscribe_refused"]
    assert refused > LOUD_AFTER + 3  # still retried after it turned loud
    assert s.stats.refusals_unexplained == refused
    loud = [e for e in logs if e["event"] == "subscription_refused_repeatedly"]
    assert [(e["channel"], e["log_level"], e["refusals"]) for e in loud] == [
        (ASSET_DETAIL, "error", LOUD_AFTER)
    ]
    warned = [e for e in logs if e["event"] == "subscription_refused"]
    assert len(warned) == 1  # the first refusal, a warning


@pytest.mark.parametrize("label", ["SUB_ACCOUNT_LOCKED", "ACCOUNT_LOCKED", "READ_ONLY"])
async def test_a_code_4_label_no_new_key_cures_is_the_forbidden_state(
    wsim: Simulator,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
    label: str,
) -> None:
    account = wsim.state.accounts[ACCOUNT]
    account.refuse[ASSET_DETAIL] = 4
    account.refuse_text[ASSET_DETAIL] = f'{{"label":"{label}","message":"refused"}}\n'
    s = session(wsim, good_key(wsim), wall_clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_for, s, 120)
        await trio.sleep(60)
        assert s.stats.subscription == "forbidden"  # loud, retried slowly: no new key
        assert label in s.stats.subscription_reason
        nursery.cancel_scope.cancel()
    assert wsim.state.ws_events["auth_refused"] == 0


async def test_a_rest_error_whose_text_is_detail_keeps_its_words(
    sim: Simulator, broker: BrokerClient
) -> None:
    sim.state.faults.append(
        Fault("/broker/info", count=1, status=403, label="FORBIDDEN", text_field="detail")
    )
    with pytest.raises(AuthError) as info:
        await broker.info()
    assert (info.value.label, info.value.message) == ("FORBIDDEN", "injected fault")


async def test_a_snapshot_error_whose_text_is_detail_keeps_its_words(
    sim: Simulator, http: httpx.AsyncClient, wall_clock: Callable[[], float]
) -> None:
    key = sim.state.create_key(ACCOUNT, "k", [], [])
    sim.state.faults.append(
        Fault(
            "/unified/accounts",
            count=1,
            status=403,
            label="SUB_ACCOUNT_LOCKED",
            text_field="detail",
        )
    )
    with pytest.raises(AuthError) as info:
        await SnapshotClient(http, sim.rest_url, wall_clock).fetch(
            ApiCredentials(key.key, key.secret)
        )
    assert (info.value.label, info.value.message) == ("SUB_ACCOUNT_LOCKED", "injected fault")


async def test_gate_refuses_a_payload_mixing_all_with_currencies(
    wsim: Simulator, wall_clock: Callable[[], float]
) -> None:
    key = wsim.state.create_key(ACCOUNT, "k", [], [])
    creds = ApiCredentials(key.key, key.secret)
    async with open_websocket_url(wsim.ws_url) as ws:
        now = int(wall_clock())
        await ws.send_message(subscribe(ASSET_DETAIL, ["BTC", "!all"], now, creds))
        event = parse(await ws.get_message())
        await ws.send_message(subscribe(ASSET_DETAIL, ["!all"], now, creds))
        accepted = parse(await ws.get_message())
    assert isinstance(event, Error)
    assert (event.code, event.kind) == (2, ErrorKind.ARGUMENT)
    assert "payload" in event.message
    assert accepted == Ack(ASSET_DETAIL, "subscribe")


def test_the_config_refuses_a_mixed_payload_in_one_line() -> None:
    with pytest.raises(ValidationError) as info:
        GateSettings(currencies=["BTC", "!all"])
    assert 'mixes "!all" with currency names' in str(info.value)
    assert GateSettings(currencies=["!all"]).currencies == ["!all"]
    assert GateSettings(currencies=["BTC", "ETH"]).currencies == ["BTC", "ETH"]


def test_loading_a_mixed_payload_says_the_value_and_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text('[gate]\ncurrencies = ["BTC", "!all"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config, {})
    [line] = [x for x in str(info.value).splitlines() if "gate.currencies" in x]
    assert "['BTC', '!all']" in line and 'use ["!all"] alone' in line
