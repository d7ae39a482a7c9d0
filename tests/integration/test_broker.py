"""BrokerClient against the strict simulator: every endpoint, every error label path."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import Fault
from collector.gate.broker import BrokerClient, GateUnavailableError, RetryPolicy
from collector.gate.errors import (
    AuthError,
    BadResponseError,
    ClockSkewError,
    GateAPIError,
    InvalidKeyError,
    NotFoundError,
    RateLimitedError,
    ServerError,
)
from collector.gate.models import ApiKeyInfo, CreatedApiKey, KeyPermission, SubAccountSpec
from collector.gate.signing import ApiCredentials
from collector.gate.transport import RestTransport

READ = [KeyPermission(name="spot", read_only=True)]
SPEC = SubAccountSpec(
    id="bob-1",
    name="bob",
    maker_rate="0.002",
    taker_rate="0.002",
    futures_maker_rate="-0.0001",
    futures_taker_rate="0.002",
)


def client_for(
    sim: Simulator, http: httpx.AsyncClient, creds: ApiCredentials, clock: Callable[[], float]
) -> BrokerClient:
    return BrokerClient(
        http, creds, base_url=sim.rest_url, wall_clock=clock, retry=RetryPolicy(base_delay=0.1)
    )


# -- endpoints --------------------------------------------------------------


async def test_info(broker: BrokerClient) -> None:
    info = await broker.info()
    assert info.id == 10001
    assert info.used_sub_accounts == 12


async def test_sub_account_lifecycle(broker: BrokerClient, sim: Simulator) -> None:
    created = await broker.create_sub_account(SPEC)
    assert created.id == "bob-1" and created.enabled
    assert (await broker.get_sub_account(created.gate_id)).name == "bob"

    updated = await broker.update_sub_account(
        created.gate_id, SPEC.model_copy(update={"name": "b2"})
    )
    assert updated.name == "b2"

    await broker.disable_sub_account(created.gate_id)
    assert not (await broker.get_sub_account(created.gate_id)).enabled
    assert sim.state.accounts[created.gate_id].status == "disabled"
    await broker.enable_sub_account(created.gate_id)
    assert (await broker.get_sub_account(created.gate_id)).enabled


async def test_list_sub_accounts_walks_every_page(broker: BrokerClient, sim: Simulator) -> None:
    sim.state.seed(238)  # 250 in all
    found = [a async for a in broker.list_sub_accounts(page_size=100)]
    assert len(found) == 250
    assert len({a.gate_id for a in found}) == 250
    assert sim.state.calls["GET sub_accounts"] == 3
    assert sum(not a.enabled for a in found) == 3  # every 4th of the first 12


async def test_key_lifecycle_secret_only_on_creation(broker: BrokerClient) -> None:
    created = await broker.create_key(100001, "gate-collector", READ)
    assert len(created.secret.get_secret_value()) == 64
    assert created.secret.get_secret_value() not in repr(created)

    listed = [k async for k in broker.list_keys(100001)]
    assert [k.key for k in listed] == [created.key]
    assert listed[0].read_only
    fetched = await broker.get_key(100001, created.key)
    assert fetched.name == "gate-collector"
    assert not hasattr(fetched, "secret")

    await broker.update_key(100001, created.key, "renamed", READ, ["127.0.0.1"])
    fetched = await broker.get_key(100001, created.key)
    assert (fetched.name, fetched.ip_whitelist) == ("renamed", ["127.0.0.1"])

    await broker.delete_key(100001, created.key)
    assert [k async for k in broker.list_keys(100001)] == []
    with pytest.raises(NotFoundError):
        await broker.get_key(100001, created.key)


async def test_transfers_create_and_list(broker: BrokerClient) -> None:
    order = await broker.create_transfer("BTC", 100002, "to", "1.5")
    await broker.create_transfer("USDT", 100003, "from", "10", client_order_id="mine-1")
    rows = [t async for t in broker.list_transfers()]
    assert [(t.currency, t.client_order_id) for t in rows] == [("BTC", order), ("USDT", "mine-1")]
    only = [t async for t in broker.list_transfers(sub_uid=100003)]
    assert [t.amount for t in only] == ["10"]


async def test_a_retried_transfer_cannot_move_money_twice(
    broker: BrokerClient, sim: Simulator
) -> None:
    # Gate does the transfer but the answer is lost: the retry carries the same id.
    sim.state.faults.append(Fault("/broker/sub_account_transfers", count=1, drop_response=True))
    await broker.create_transfer("BTC", 100002, "to", "1")
    assert len(sim.state.transfers) == 1
    assert sim.state.calls["POST transfers"] == 2


# -- errors -----------------------------------------------------------------


async def test_unknown_key_is_invalid_key(
    sim: Simulator, http: httpx.AsyncClient, wall_clock: Callable[[], float]
) -> None:
    client = client_for(sim, http, ApiCredentials("nope", sim.state.broker.secret), wall_clock)
    with pytest.raises(InvalidKeyError) as info:
        await client.info()
    assert (info.value.status, info.value.label) == (401, "INVALID_KEY")


async def test_wrong_secret_is_invalid_signature(
    sim: Simulator, http: httpx.AsyncClient, wall_clock: Callable[[], float]
) -> None:
    client = client_for(sim, http, ApiCredentials(sim.state.broker.key, "0" * 64), wall_clock)
    with pytest.raises(AuthError) as info:
        await client.info()
    assert (info.value.status, info.value.label) == (401, "INVALID_SIGNATURE")
    assert "gate.api_secret" in str(info.value)
    assert "0" * 64 not in str(info.value)


async def test_sub_account_key_lacks_broker_permission(
    broker: BrokerClient, sim: Simulator, http: httpx.AsyncClient, wall_clock: Callable[[], float]
) -> None:
    created = await broker.create_key(100001, "x", READ)
    client = client_for(
        sim, http, ApiCredentials(created.key, created.secret.get_secret_value()), wall_clock
    )
    with pytest.raises(AuthError) as info:
        await client.info()
    assert (info.value.status, info.value.label) == (403, "FORBIDDEN")


async def test_unknown_sub_account(broker: BrokerClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await broker.get_sub_account(999)
    assert (info.value.status, info.value.label) == (404, "SUB_ACCOUNT_NOT_FOUND")


@pytest.mark.parametrize(
    ("status", "label", "kind"),
    [(403, "IP_FORBIDDEN", AuthError), (403, "READ_ONLY", AuthError), (400, "ODD", GateAPIError)],
)
async def test_error_labels_become_typed_errors(
    broker: BrokerClient, sim: Simulator, status: int, label: str, kind: type[Exception]
) -> None:
    sim.state.faults.append(Fault("/broker/info", count=1, status=status, label=label))
    with pytest.raises(kind) as info:
        await broker.info()
    assert isinstance(info.value, GateAPIError)
    assert (info.value.status, info.value.label) == (status, label)
    assert sim.state.calls["GET info"] == 1  # not retried


async def test_server_errors_are_retried_with_backoff(
    broker: BrokerClient, sim: Simulator, autojump_clock: trio.testing.MockClock
) -> None:
    sim.state.faults.append(Fault("/broker/info", count=3))
    start = trio.current_time()
    assert (await broker.info()).id == 10001
    assert sim.state.calls["GET info"] == 4
    # backoff of 0.1, 0.2, 0.4 s at most, at least half of each
    assert 0.35 <= trio.current_time() - start <= 0.7


async def test_server_errors_give_up_after_the_attempts(
    broker: BrokerClient, sim: Simulator, autojump_clock: trio.testing.MockClock
) -> None:
    sim.state.faults.append(Fault("/broker/info", count=100))
    with pytest.raises(ServerError) as info:
        await broker.info()
    assert info.value.label == "TOO_BUSY"
    assert sim.state.calls["GET info"] == 5


async def test_non_idempotent_calls_are_not_retried(broker: BrokerClient, sim: Simulator) -> None:
    sim.state.faults.append(Fault("/broker/sub_account_keys", count=1))
    with pytest.raises(ServerError):
        await broker.create_key(100001, "x", READ)
    assert sim.state.calls["POST keys"] == 1
    assert sim.state.keys == {}


async def test_rate_limit_waits_for_the_reset_without_a_storm(
    broker: BrokerClient, sim: Simulator, autojump_clock: trio.testing.MockClock
) -> None:
    sim.state.rate_limit = 3
    start = trio.current_time()
    for _ in range(7):
        await broker.info()
    # 7 calls at 3 per 10 s window: two waits for a reset, and Gate never saw a 429
    # because the client counted down X-Gate-RateLimit-Requests-Remain itself.
    assert sim.state.calls["GET info"] == 7
    assert 20 <= trio.current_time() - start < 30


async def test_a_429_is_waited_out_until_the_reset_header(
    sim: Simulator,
    broker: BrokerClient,
    http: httpx.AsyncClient,
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim.state.rate_limit = 2
    # Another client (say, a second instance) used up the window.
    other = BrokerClient(http, sim.state.broker, base_url=sim.rest_url, wall_clock=sim.state.clock)
    await other.info()
    await other.info()
    start = trio.current_time()
    with capture_logs() as logs:
        assert (await broker.info()).id == 10001
    waited = trio.current_time() - start
    # Gate's reset is whole seconds: the window's end rounded up (at most 1 s more).
    assert 9 <= waited <= 11.1
    assert [entry["event"] for entry in logs].count("rate_limited") == 1, logs


async def test_429_without_any_hint_still_backs_off_and_then_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429, json={"label": "TOO_MANY_REQUESTS", "message": "slow down"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = BrokerClient(
            http,
            ApiCredentials("k", "s"),
            base_url="https://gate.test/api/v4",
            retry=RetryPolicy(rate_limit_waits=3, base_delay=1.0),
        )
        start = trio.current_time()
        with pytest.raises(RateLimitedError):
            await client.info()
    assert calls == 4
    assert trio.current_time() - start >= 3.0


async def test_clock_skew_is_measured_and_corrected(broker: BrokerClient, sim: Simulator) -> None:
    sim.state.skew = 120.0  # Gate's clock is two minutes ahead of ours
    with capture_logs() as logs:
        info = await broker.info()
    assert info.id == 10001
    assert 118 <= broker.clock_skew <= 122
    # The first attempt expired; the retry used the corrected time.
    assert sim.state.calls["GET info"] == 1
    assert any(e["event"] == "clock_skew" and e["log_level"] == "warning" for e in logs)
    await broker.info()
    assert sim.state.calls["GET info"] == 2


async def test_small_skew_is_corrected_silently(broker: BrokerClient, sim: Simulator) -> None:
    sim.state.skew = -20.0
    with capture_logs() as logs:
        await broker.info()
    assert -22 <= broker.clock_skew <= -18
    assert not [e for e in logs if e["event"] == "clock_skew"]


async def test_an_answer_that_cannot_be_decoded_is_one_bad_response_line() -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # says gzip, is not
        return httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = BrokerClient(http, ApiCredentials("k", "s"), base_url="https://gate.test/api/v4")
        with pytest.raises(BadResponseError) as info:
            await client.info()
    assert str(info.value) == (
        "GET /broker/info: unreadable answer from Gate (DecodingError('Error -3 while "
        "decompressing data: incorrect header check'))"
    )


async def test_request_expired_that_persists_is_a_clock_skew_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"label": "REQUEST_EXPIRED", "message": "too old"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = BrokerClient(http, ApiCredentials("k", "s"), base_url="https://gate.test/api/v4")
        with pytest.raises(ClockSkewError) as info:
            await client.info()
    assert "NTP" in str(info.value)
    assert client.requests_sent == 2


async def test_network_errors_retry_then_fail_clearly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = BrokerClient(http, ApiCredentials("k", "s"), base_url="https://gate.test/api/v4")
        with pytest.raises(GateUnavailableError) as info:
            await client.info()
    assert "gate.rest_url" in str(info.value)
    assert client.requests_sent == 5


async def test_malformed_answer_names_the_missing_field() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"commission_rate": "0.3"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = BrokerClient(http, ApiCredentials("k", "s"), base_url="https://gate.test/api/v4")
        with pytest.raises(BadResponseError) as info:
            await client.info()
    assert "BrokerInfo" in str(info.value) and "id" in str(info.value)


async def test_non_json_answer_is_a_bad_response() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>gateway</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = BrokerClient(http, ApiCredentials("k", "s"), base_url="https://gate.test/api/v4")
        with pytest.raises(BadResponseError) as info:
            await client.info()
    assert "not JSON" in str(info.value)


async def test_signature_covers_the_encoded_query_as_sent(
    broker: BrokerClient, sim: Simulator
) -> None:
    # sub_uid with characters that must be percent-encoded: the simulator checks
    # the signature against the raw query it received.
    sim.state.transfers.append(
        {
            "client_order_id": "",
            "currency": "BTC",
            "sub_account": "a b&c",
            "direction": "to",
            "amount": "1",
            "timest": str(int(sim.state.now())),
            "uid": "1",
            "source": "api",
            "sub_account_type": "spot",
        }
    )
    rows = [t async for t in broker.list_transfers(start=int(sim.state.now()) - 60)]
    assert len(rows) == 1


# -- Gate as it really is: vectors from gate-vectors.md ----------------------------

SDK_KEY = (
    b'{"user_id":10001,"name":"gate-collector","type":1,"mode":1,"perms":[{"name":"spot",'
    b'"read_only":true}],"ip_whitelist":[],"key":"bfc5f289273ea47b7cd41d9ce7e27a0d","state":1,'
    b'"created_at":1583827286,"updated_at":1583827286,"last_access":1583827300}'
)
DOC_KEY = (
    b'{"user_id":"10001","name":"spot","type":1,"mode":1,"perms":[{"name":"spot",'
    b'"read_only":false}],"key":"bfc5f289273ea47b7cd41d9ce7e27a0d","secret":"s3",'
    b'"ip_whitelist":["8.8.8.8"],"created_at":"1583827286","updated_at":"1583827286",'
    b'"some_new_field":{"x":1}}'
)


def test_a_key_typed_as_gates_sdk_types_it_is_read() -> None:
    info = ApiKeyInfo.model_validate_json(SDK_KEY)
    assert (info.user_id, info.created_at, info.last_access) == (
        "10001",
        "1583827286",
        "1583827300",
    )
    assert info.created_seconds == 1583827286.0
    assert info.read_only and info.state == 1


def test_a_key_as_the_broker_document_shows_it_is_read_and_unknown_fields_ignored() -> None:
    created = CreatedApiKey.model_validate_json(DOC_KEY)
    assert (created.user_id, created.created_at) == ("10001", "1583827286")
    assert created.secret.get_secret_value() == "s3"
    assert not created.read_only
    assert "s3" not in repr(created)


async def test_list_keys_reads_int_fields_from_the_simulator(
    broker: BrokerClient, sim: Simulator
) -> None:
    created = await broker.create_key(100001, "gc", READ, key_type=1)
    # The simulator answers as the SDK types keys: ints where the document shows strings.
    raw = sim.state.keys[created.key].as_json()
    assert isinstance(raw["user_id"], int) and isinstance(raw["created_at"], int)
    [listed] = [k async for k in broker.list_keys(100001)]
    assert listed.key == created.key
    assert listed.user_id == "100001"
    assert listed.created_seconds == pytest.approx(sim.state.now(), abs=2)


async def test_a_429_whose_reset_is_now_waits_a_window_instead_of_spinning(
    sim: Simulator,
    broker: BrokerClient,
    http: httpx.AsyncClient,
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim.state.rate_limit = 1
    sim.state.rate_reset_now = True  # Gate's "just the current timestamp", in seconds
    other = BrokerClient(http, sim.state.broker, base_url=sim.rest_url, wall_clock=sim.state.clock)
    await other.info()  # another instance used the window up
    start = trio.current_time()
    with capture_logs() as logs:
        assert (await broker.info()).id == 10001
    waited = trio.current_time() - start
    refusals = [e for e in logs if e["event"] == "rate_limited"]
    # One refusal, then a wait of Gate's 10 s window (plus jitter), then success:
    # not five immediate retries and a failure.
    assert len(refusals) == 1, logs
    assert 10.0 <= waited <= 12.6
    assert sim.state.calls["GET info"] == 2


async def test_a_query_that_needs_escaping_is_signed_as_gate_checks_it(
    sim: Simulator, http: httpx.AsyncClient, wall_clock: Callable[[], float]
) -> None:
    # The simulator verifies over the decoded query, as Gate does: a client signing
    # the encoded form would get INVALID_SIGNATURE here.
    odd = "a b&c/ü+=%"
    sim.state.transfers.append(
        {
            "client_order_id": "",
            "currency": "BTC",
            "sub_account": odd,
            "direction": "to",
            "amount": "1",
            "timest": str(int(sim.state.now())),
            "uid": "1",
            "source": "api",
            "sub_account_type": "spot",
        }
    )
    rest = RestTransport(http, sim.state.broker, base_url=sim.rest_url, wall_clock=wall_clock)
    rows = await rest.call("GET", "/broker/sub_account_transfers", params={"sub_uid": odd})
    assert [r["sub_account"] for r in rows] == [odd]
