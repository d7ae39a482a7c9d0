"""The unified protocol, sans-IO: requests built, frames parsed, nothing ever raised."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.gate import protocol
from collector.gate.protocol import ASSETS, Ack, Error, ErrorKind, Invalid, parse
from collector.gate.signing import ApiCredentials, ws_signature

CREDS = ApiCredentials("key-1", "secret-1")


def frame(**body: Any) -> bytes:
    # The standard library, not orjson: hypothesis makes integers beyond 64 bits.
    return json.dumps(body).encode()


def test_subscribe_is_signed_over_channel_event_and_time() -> None:
    request = orjson.loads(protocol.subscribe("unified.asset_detail", ["BTC"], 1716796362, CREDS))
    assert request == {
        "time": 1716796362,
        "channel": "unified.asset_detail",
        "event": "subscribe",
        "payload": ["BTC"],
        "auth": {
            "method": "api_key",
            "KEY": "key-1",
            "SIGN": ws_signature("secret-1", "unified.asset_detail", "subscribe", 1716796362),
        },
    }


def test_every_request_is_signed_afresh() -> None:
    first = orjson.loads(protocol.subscribe("unified.assets", [], 100, CREDS))
    second = orjson.loads(protocol.subscribe("unified.assets", [], 101, CREDS))
    assert first["auth"]["SIGN"] != second["auth"]["SIGN"]
    unsub = orjson.loads(protocol.unsubscribe("unified.assets", [], 100, CREDS))
    assert unsub["event"] == "unsubscribe" and unsub["auth"]["SIGN"] != first["auth"]["SIGN"]


def test_ping_has_no_auth() -> None:
    assert orjson.loads(protocol.ping(5)) == {"time": 5, "channel": "unified.ping"}


def test_seed_ack_is_an_ack() -> None:
    event = protocol.parse(
        frame(
            time=1716796362,
            time_ms=1716796362915,
            channel="unified.assets",
            event="subscribe",
            result={"status": "success"},
        )
    )
    assert event == protocol.Ack("unified.assets", "subscribe")


def test_seed_assets_update() -> None:
    event = protocol.parse(
        frame(
            time=1700625194,
            channel="unified.assets",
            event="update",
            result={"u": 9008, "t": 1700625194, "r": "18.56"},
        )
    )
    assert isinstance(event, protocol.Update)
    assert event.results == [{"u": 9008, "t": 1700625194, "r": "18.56"}]
    assert (event.time, event.time_ms) == (1700625194, None)


def test_result_may_be_an_array() -> None:
    event = protocol.parse(
        frame(
            time=1,
            time_ms=1000,
            channel="unified.asset_detail",
            event="update",
            result=[{"u": 1, "dts": {}}, {"u": 2, "dts": {}}],
        )
    )
    assert isinstance(event, protocol.Update) and len(event.results) == 2


def test_pong() -> None:
    event = protocol.parse(
        frame(time=1701830644, time_ms=1701830644326, channel="unified.pong", event="", result=None)
    )
    assert event == protocol.Pong(1701830644326)


def test_upgrade() -> None:
    assert protocol.parse(frame(channel="", event="upgrade")) == protocol.Upgrade()


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (2, "INVALID_SIGNATURE: signature mismatch", protocol.ErrorKind.AUTH),
        (4, "invalid key", protocol.ErrorKind.AUTH),
        (2, "REQUEST_EXPIRED", protocol.ErrorKind.AUTH),
        (1, "invalid argument struct", protocol.ErrorKind.ARGUMENT),
        (2, "invalid argument: payload", protocol.ErrorKind.ARGUMENT),
        (3, "service error", protocol.ErrorKind.SERVER),
    ],
)
def test_errors_are_classified(code: int, message: str, kind: protocol.ErrorKind) -> None:
    event = protocol.parse(
        frame(
            time=1,
            channel="unified.assets",
            event="subscribe",
            error={"code": code, "message": message},
            result=None,
        )
    )
    assert event == protocol.Error("unified.assets", "subscribe", code, message, kind)


def test_unconfirmed_subscription_is_an_error() -> None:
    event = protocol.parse(
        frame(channel="unified.assets", event="subscribe", result={"status": "fail"})
    )
    assert isinstance(event, protocol.Error) and event.kind is protocol.ErrorKind.SERVER


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (frame(channel="spot.balances", event="update", result={}), "unknown channel"),
        (frame(channel="unified.assets", event="update", result="x"), "result is not"),
        (frame(channel="unified.assets", event="update", result=[{}, 3]), "result is not"),
        (frame(channel="unified.assets", event="update", result=None), "result is not"),
        (frame(channel="unified.asset_detail", event="update", result={"dts": [1]}), "dts"),
        (frame(channel="unified.assets", event="frobnicate"), "unknown event"),
        (frame(channel="unified.assets", event="update", error="bad"), "error is not"),
    ],
)
def test_unusable_frames_are_invalid_with_a_reason(raw: bytes, reason: str) -> None:
    event = protocol.parse(raw)
    assert isinstance(event, protocol.Invalid)
    assert reason in event.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_any_json_parses_without_raising(value: Any) -> None:
    event = protocol.parse(json.dumps(value))
    assert isinstance(
        event,
        protocol.Ack
        | protocol.Update
        | protocol.Pong
        | protocol.Error
        | protocol.Upgrade
        | protocol.Invalid,
    )


@settings(max_examples=300, deadline=None)
@given(
    channel=st.sampled_from(["unified.assets", "unified.asset_detail", "unified.pong", "x"]),
    event=st.sampled_from(["update", "subscribe", "unsubscribe", "upgrade", "", None]),
    result=json_values,
    error=json_values,
)
def test_frames_shaped_like_gates_parse_without_raising(
    channel: str, event: str | None, result: Any, error: Any
) -> None:
    protocol.parse(frame(channel=channel, event=event, result=result, error=error))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_without_raising(raw: bytes) -> None:
    protocol.parse(raw)


# -- upgrades, refusals and permissions --------------------------------------------------

SPOT_UPGRADE = (
    b'{"time":1784800711,"time_ms":1784800711140,"channel":"spot.system","event":"update",'
    b'"result":{"type":"upgrade","msg":"The connection will soon be closed for a service '
    b'upgrade. Please reconnect."}}'
)
SPOT_REFUSAL = (
    b'{"time":1770603321,"time_ms":1770603321767,"conn_id":"57a8765578ea837e",'
    b'"trace_id":"3c75ba05569b3b292a2f36cfdd90d868","channel":"unified.assets",'
    b'"event":"subscribe","payload":["20011"],"error":{"code":2,"message":"channel '
    b'spot.system does not support SBE"},"result":{"status":"fail"}}'
)


@pytest.mark.parametrize(
    "raw",
    [
        SPOT_UPGRADE,
        SPOT_UPGRADE.replace(b"spot.system", b"unified.system"),
        b'{"time":1,"channel":"","event":"upgrade","result":null}',
    ],
)
def test_both_upgrade_shapes_mean_reconnect_now(raw: bytes) -> None:
    assert protocol.parse(raw) == protocol.Upgrade()


def test_a_system_update_that_is_not_an_upgrade_is_not_one() -> None:
    raw = SPOT_UPGRADE.replace(b'"type":"upgrade"', b'"type":"notice"')
    assert isinstance(protocol.parse(raw), protocol.Invalid)


@pytest.mark.parametrize("code", [1, 2, 3])
def test_a_refused_subscribe_is_an_error_of_its_channel_not_auth(code: int) -> None:
    raw = SPOT_REFUSAL.replace(b'"code":2', b'"code":%d' % code)
    event = protocol.parse(raw)
    assert isinstance(event, protocol.Error)
    assert (event.channel, event.event, event.code) == ("unified.assets", "subscribe", code)
    assert event.kind in (protocol.ErrorKind.ARGUMENT, protocol.ErrorKind.SERVER)


def test_a_status_fail_without_an_error_is_a_refusal() -> None:
    event = protocol.parse(
        frame(time=1, channel="unified.assets", event="subscribe", result={"status": "fail"})
    )
    assert isinstance(event, protocol.Error) and event.event == "subscribe"


@pytest.mark.parametrize(
    "label",
    [
        '{"label":"FORBIDDEN","message":"Request IP not in whitelist: 203.0.113.7"}',
        '{"label":"NO_PERMISSION","message":"the key has no unified permission"}',
    ],
)
def test_a_permission_refusal_is_not_a_dead_key(label: str) -> None:
    event = protocol.parse(
        frame(
            time=1,
            channel="unified.asset_detail",
            event="subscribe",
            error={"code": 4, "message": label},
            result=None,
        )
    )
    assert isinstance(event, protocol.Error)
    assert event.kind is protocol.ErrorKind.PERMISSION


def test_an_invalid_key_is_still_auth() -> None:
    message = '{"label":"INVALID_KEY","message":"Invalid key provided"}\n'
    assert protocol.classify(4, message) is protocol.ErrorKind.AUTH


# -- Frame rules found by mutation testing (tests/MUTATION.md): whole events, by value ----------


def gate_frame(**message: object) -> bytes:
    return orjson.dumps(message)


def test_json_that_is_not_an_object_is_invalid_with_its_start() -> None:
    assert parse(b"[1, 2]") == Invalid("not a JSON object", "[1, 2]")
    assert parse('"text"') == Invalid("not a JSON object", '"text"')


def test_an_unsubscribe_ack_is_an_ack() -> None:
    answer = gate_frame(channel=ASSETS, event="unsubscribe", result={"status": "success"})
    assert parse(answer) == Ack(ASSETS, "unsubscribe")


def test_an_unconfirmed_subscribe_is_a_server_error_of_its_channel() -> None:
    answer = gate_frame(channel=ASSETS, event="subscribe", result={"status": "fail"})
    expected = "not confirmed: {'status': 'fail'}"
    assert parse(answer) == Error(ASSETS, "subscribe", None, expected, ErrorKind.SERVER)


def test_the_unconfirmed_text_is_cut_at_200_characters() -> None:
    answer = gate_frame(channel=ASSETS, event="unsubscribe", result={"status": "x" * 500})
    event = parse(answer)
    assert isinstance(event, Error)
    assert event.message == ("not confirmed: {'status': '" + "x" * 500)[:200]
    assert len(event.message) == 200
