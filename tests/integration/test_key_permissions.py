"""The unified permission in both worlds (issue 23 item 3), against the simulator.

World "key page": Gate's create call takes ``unified`` and Gate enforces it on the
WebSocket and on ``/unified/accounts``. World "Broker document": the create call
refuses names the Broker document does not list. Autojump clock; every wait has
a deadline; counts are taken at the simulator and at the collector's output.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient
from collector.gate.errors import GateAPIError
from collector.gate.models import KeyPermission
from collector.gate.signing import ApiCredentials
from collector.gate.snapshot import NotUnifiedError, SnapshotClient
from collector.keys import KeyPolicy, KeyProvisioner, KeyStore
from collector.keys.provision import refused_permission
from collector.supervisor import account_state as status
from tests.helpers import Running, Supervise, busy_simulator, enabled

SETTLE = 120.0


@pytest.fixture
async def psim(nursery: trio.Nursery, wall_clock: Callable[[], float]) -> Simulator:
    """Six accounts that change every 5 s; Gate requires the unified permission."""
    simulator = await busy_simulator(nursery, wall_clock, 6, 5.0)
    simulator.state.required_perms = frozenset({"unified"})
    return simulator


def perms_of(sim: Simulator, account: int) -> set[str]:
    [key] = sim.state.keys_of(account)
    return {str(p["name"]) for p in key.perms}


async def settle(running: Running, accounts: set[int], state: str) -> None:
    with trio.fail_after(SETTLE):
        while True:
            states = {s.account: s.state for s in running.supervisor.account_states()}
            if all(states.get(a) == state for a in accounts):
                return
            await trio.sleep(1.0)


async def test_gate_that_takes_unified_gets_it_by_default_and_every_account_is_read(
    psim: Simulator,
    supervise: Supervise,
    autojump_clock: trio.testing.MockClock,
) -> None:
    running = await supervise(psim)
    await settle(running, enabled(psim), status.ACTIVE)
    for account in enabled(psim):
        assert perms_of(psim, account) == {"wallet", "spot", "futures", "unified"}
        assert psim.state.snapshots[account] >= 1
    assert psim.state.ws_events["auth_refused"] == 0


async def test_a_create_call_that_refuses_unified_creates_without_it_and_says_so_once(
    psim: Simulator,
    supervise: Supervise,
    autojump_clock: trio.testing.MockClock,
) -> None:
    psim.state.broker_doc_perms = True
    psim.state.required_perms = frozenset()  # this Gate reads unified data without it
    with capture_logs() as logs:
        running = await supervise(psim)
        await settle(running, enabled(psim), status.ACTIVE)
    refused = [e for e in logs if e["event"] == "key_permission_refused"]
    assert [(e["permission"], e["permissions"]) for e in refused] == [
        ("unified", ["wallet", "spot", "futures"])
    ]
    assert "invalid perms name: unified" in refused[0]["error"]
    assert psim.state.calls["keys_created"] == len(enabled(psim))  # one key each
    for account in enabled(psim):
        assert perms_of(psim, account) == {"wallet", "spot", "futures"}
    created = [e for e in logs if e["event"] == "key_created"]
    assert {tuple(e["permissions"]) for e in created} == {("wallet", "spot", "futures")}


async def test_a_key_gate_then_refuses_for_permissions_is_forbidden_never_churned(
    psim: Simulator,
    supervise: Supervise,
    autojump_clock: trio.testing.MockClock,
) -> None:
    psim.state.broker_doc_perms = True  # unified cannot be asked for, yet Gate needs it
    with capture_logs() as logs:
        running = await supervise(psim)
        await settle(running, enabled(psim), status.FORBIDDEN)
        await trio.sleep(900)  # three slow retries: still no new key
    assert psim.state.calls["keys_created"] == len(enabled(psim))
    assert sum(psim.state.deleted.values()) == 0
    assert running.supervisor.stats.key_replacements == 0
    assert sum(psim.state.active.values()) == 0
    states = {s.account: s for s in running.supervisor.account_states()}
    assert all("lacks the permission unified" in states[a].reason for a in enabled(psim))
    forbidden = [e for e in logs if e["event"] == "subscription_forbidden"]
    assert len(forbidden) == 2 * len(enabled(psim))  # once per channel, not per retry
    assert all("accounts.key_permissions" in e["hint"] for e in forbidden)


async def test_unified_accounts_refuses_a_key_without_unified(
    psim: Simulator, http: httpx.AsyncClient, wall_clock: Callable[[], float]
) -> None:
    client = SnapshotClient(http, psim.rest_url, wall_clock)
    without = psim.state.create_key(100001, "k", [{"name": "spot", "read_only": True}], [])
    with_it = psim.state.create_key(100001, "k", [{"name": "unified", "read_only": True}], [])
    with pytest.raises(GateAPIError) as info:
        await client.fetch(ApiCredentials(without.key, without.secret))
    assert (info.value.status, info.value.label) == (403, "FORBIDDEN")
    assert not isinstance(info.value, NotUnifiedError)
    assert "lacks the permission unified" in info.value.message
    body = await client.fetch(ApiCredentials(with_it.key, with_it.secret))
    assert body.user_id == 100001


async def test_no_name_is_dropped_when_the_refusal_is_not_about_one(
    sim: Simulator,
    broker: BrokerClient,
    store: KeyStore,
) -> None:
    sim.state.accounts[100001].refuse_keys = True  # a 400 that names no permission
    provisioner = KeyProvisioner(broker, store, KeyPolicy())
    with pytest.raises(GateAPIError):
        await provisioner.create(100001)
    assert provisioner.refused_permissions == []


@pytest.mark.parametrize(
    ("status", "message", "requested", "refused"),
    [
        (400, "invalid perms name: unified", ["wallet", "unified"], "unified"),
        (400, "Invalid perm UNIFIED", ["wallet", "unified"], "unified"),
        # a message that lists the allowed names too: the one not listed is refused
        (
            400,
            "perm unified not in wallet, spot, futures, delivery, withdraw",
            ["wallet", "spot", "unified"],
            "unified",
        ),
        (400, "wallet and spot are not allowed", ["wallet", "spot"], None),  # a guess
        (400, "no more API keys for this sub-account", ["wallet", "unified"], None),
        (403, "unified", ["wallet", "unified"], None),  # not a bad parameter
        (400, "unifiedx is bad", ["wallet", "unified"], None),  # not the word
    ],
)
def test_which_permission_a_refusal_names(
    status: int, message: str, requested: list[str], refused: str | None
) -> None:
    error = GateAPIError(status, "INVALID_PARAM_VALUE", message)
    assert refused_permission(error, requested) == refused


def test_the_default_key_asks_for_unified_read_only() -> None:
    assert KeyPolicy().permissions == ("wallet", "spot", "futures", "unified")
    assert all(KeyPermission(name=n, read_only=True).read_only for n in KeyPolicy().permissions)
