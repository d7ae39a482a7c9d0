"""Gate's official SDK (``gate-api``) as the oracle for the simulator's shapes and signatures.

The SDK is generated from the same OpenAPI spec as Gate's API v4 document: its
requests are signed as Gate checks them, and its models are Gate's shapes. Here
the SDK itself calls the simulator (in a thread: it is synchronous), so the
simulator must accept its signatures and answer with bodies its models take,
every field present and of the SDK's type, in every account mode.
"""

from __future__ import annotations

from typing import Any

import gate_api
import pytest
import trio

from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import (
    MULTI_CURRENCY,
    PORTFOLIO,
    SINGLE_CURRENCY,
    SimSubAccount,
)
from collector.gate.unified import UnifiedAccount
from collector.points import modes, schema
from collector.points.snapshot import snapshot_points

_TYPES = {"str": str, "int": int, "bool": bool, "float": (int, float)}


@pytest.fixture
async def sim(nursery: trio.Nursery) -> Simulator:
    simulator = Simulator.create(accounts=3)
    await simulator.start(nursery)
    return simulator


def sdk(sim: Simulator, key: str, secret: str) -> gate_api.ApiClient:
    return gate_api.ApiClient(gate_api.Configuration(host=sim.rest_url, key=key, secret=secret))


def own_key(sim: Simulator, account: SimSubAccount) -> tuple[str, str]:
    made = sim.state.create_key(account.gate_id, "gate-collector", [], [])
    return made.key, made.secret


def assert_every_sdk_field(raw: dict[str, Any], model: type[Any]) -> None:
    """Every field the SDK model names is in ``raw``, with the SDK's JSON type."""
    for name, kind in model.openapi_types.items():
        assert name in raw, f"{model.__name__}.{name} missing"
        wanted = _TYPES.get(kind)
        if wanted is not None:
            assert isinstance(raw[name], wanted), (name, raw[name])


@pytest.mark.parametrize("mode", [MULTI_CURRENCY, PORTFOLIO, SINGLE_CURRENCY])
async def test_the_sdk_reads_the_unified_account_signed_its_way_in_every_mode(
    sim: Simulator, mode: str
) -> None:
    account = sim.state.accounts[100001]
    account.mode = mode
    account.margin_ratio = 1.37
    client = sdk(sim, *own_key(sim, account))
    api = gate_api.UnifiedApi(client)
    answer = await trio.to_thread.run_sync(lambda: api.list_unified_accounts())
    assert isinstance(answer, gate_api.UnifiedAccount)
    assert answer.mode == mode and answer.user_id == account.gate_id
    assert set(answer.balances) == {"BTC", "ETH", "USDT"}
    # the raw body: every SDK field, typed as the SDK types it
    raw = client.sanitize_for_serialization(answer)
    assert_every_sdk_field(raw, gate_api.UnifiedAccount)
    for balance in raw["balances"].values():
        assert_every_sdk_field(balance, gate_api.UnifiedBalance)
    cross = mode != SINGLE_CURRENCY
    assert (float(answer.total_maintenance_margin_rate) != 0) is cross  # Gate's zeros
    usdt = answer.balances["USDT"]
    assert (float(usdt.mmr) != 0) is (not cross)
    rate = answer.total_maintenance_margin_rate if cross else usdt.mmr
    assert float(rate) == pytest.approx(1.37)
    # and the collector makes of it the effective rate 1.37, never a 0
    result = snapshot_points(account.gate_id, "x", UnifiedAccount.parse(raw), 1)
    assert result.mode == mode
    rates = dict(result.rates)
    key = ("", schema.MAINTENANCE_MARGIN_RATE) if cross else ("USDT", "maintenance_margin_rate")
    assert rates[key] == pytest.approx(1.37)
    assert all(value != 0 for value in rates.values())


async def test_the_sdk_query_signature_is_accepted(sim: Simulator) -> None:
    account = sim.state.accounts[100002]
    api = gate_api.UnifiedApi(sdk(sim, *own_key(sim, account)))
    answer = await trio.to_thread.run_sync(lambda: api.list_unified_accounts(currency="USDT"))
    assert set(answer.balances) == {"USDT"}


async def test_a_wrong_sdk_secret_is_refused_as_gate_refuses_it(sim: Simulator) -> None:
    account = sim.state.accounts[100001]
    key, _ = own_key(sim, account)
    api = gate_api.UnifiedApi(sdk(sim, key, "not the secret"))
    with pytest.raises(gate_api.exceptions.GateApiException) as refused:
        await trio.to_thread.run_sync(lambda: api.list_unified_accounts())
    assert refused.value.label == "INVALID_SIGNATURE"


async def test_the_sdk_signs_broker_calls_as_the_simulator_checks_them(sim: Simulator) -> None:
    client = sdk(sim, sim.state.broker.key, sim.state.broker.secret)

    def list_sub_accounts() -> Any:
        return client.call_api(
            "/broker/sub_accounts",
            "GET",
            query_params=[("limit", 2), ("offset", 1)],
            header_params={"Accept": "application/json"},
            auth_settings=["apiv4"],
            response_type="object",
            _return_http_data_only=True,
        )

    rows = await trio.to_thread.run_sync(list_sub_accounts)
    assert [row["gate_id"] for row in rows] == [100002, 100003]


async def test_a_classic_account_is_refused(sim: Simulator) -> None:
    account = sim.state.accounts[100003]
    account.mode = modes.CLASSIC
    api = gate_api.UnifiedApi(sdk(sim, *own_key(sim, account)))
    with pytest.raises(gate_api.exceptions.GateApiException) as refused:
        await trio.to_thread.run_sync(lambda: api.list_unified_accounts())
    assert "UNIFIED" in refused.value.label
