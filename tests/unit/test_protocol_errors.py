"""WS error frames -> what the session does: every code and every auth label in a message.

Gate puts the auth label inside the message (code 2 or 4, sometimes a JSON
string), so a label anywhere in it, in any case, means "replace the key".
"""

from __future__ import annotations

import json

import orjson
import pytest

from collector.gate import protocol
from collector.gate.protocol import ErrorKind, classify
from collector.gate.signing import ApiCredentials, ws_signature

AUTH, ARGUMENT, SERVER = ErrorKind.AUTH, ErrorKind.ARGUMENT, ErrorKind.SERVER


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (2, "INVALID_KEY", AUTH),
        (2, "invalid_key: key not found", AUTH),
        (2, "INVALID_SIGNATURE", AUTH),
        (2, "REQUEST_EXPIRED", AUTH),
        (2, "AUTH failed", ARGUMENT),  # no label: retried, loud after a few
        (3, "AUTH service unavailable", SERVER),  # code 3 is auth only with a label
        (1, "INVALID_KEY", AUTH),
        (3, "INVALID_KEY", AUTH),
        (None, "INVALID_KEY", AUTH),
        (4, "anything", AUTH),
        (4, "", AUTH),
        (1, "invalid argument", ARGUMENT),
        (2, "channel spot.system does not support SBE", ARGUMENT),
        (3, "server error", SERVER),
        (5, "", SERVER),
        (None, "", SERVER),
    ],
)
def test_classify(code: int | None, message: str, kind: ErrorKind) -> None:
    assert classify(code, message) is kind


def test_gates_json_label_inside_a_code_2_message_is_auth() -> None:
    message = json.dumps({"label": "INVALID_KEY", "message": "Invalid key provided"}) + "\n"
    raw = json.dumps(
        {
            "time": 1647276473,
            "channel": protocol.ASSETS,
            "event": "subscribe",
            "error": {"code": 2, "message": message},
            "result": None,
        }
    )
    assert protocol.parse(raw) == protocol.Error(protocol.ASSETS, "subscribe", 2, message, AUTH)


def test_a_refused_key_names_its_account_and_gates_reason() -> None:
    expired = protocol.AuthenticationFailed(100, "REQUEST_EXPIRED")
    assert (str(expired), expired.account, expired.reason) == (
        "account 100: Gate refused the key: REQUEST_EXPIRED",
        100,
        "REQUEST_EXPIRED",
    )


def test_an_error_without_a_message_has_empty_text() -> None:
    raw = json.dumps({"channel": protocol.ASSETS, "event": "subscribe", "error": {"code": 3}})
    assert protocol.parse(raw) == protocol.Error(protocol.ASSETS, "subscribe", 3, "", SERVER)


def test_an_error_code_that_is_not_an_int_is_none() -> None:
    raw = json.dumps(
        {"channel": protocol.ASSETS, "event": "subscribe", "error": {"code": "4", "message": "x"}}
    )
    assert protocol.parse(raw) == protocol.Error(protocol.ASSETS, "subscribe", None, "x", SERVER)


def test_unsubscribe_is_signed_over_its_own_channel_payload_and_time() -> None:
    creds = ApiCredentials("key-1", "secret-1")
    request = orjson.loads(protocol.unsubscribe(protocol.ASSET_DETAIL, ["BTC"], 1716796362, creds))
    assert request == {
        "time": 1716796362,
        "channel": protocol.ASSET_DETAIL,
        "event": "unsubscribe",
        "payload": ["BTC"],
        "auth": {
            "method": "api_key",
            "KEY": "key-1",
            "SIGN": ws_signature("secret-1", protocol.ASSET_DETAIL, "unsubscribe", 1716796362),
        },
    }


def _frame(**body: object) -> str:
    return json.dumps(body)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_frame(channel=protocol.ASSETS, event="update", error="bad"), "error is not an object"),
        (
            _frame(channel=protocol.ASSETS, event="update", result=[{}, 3]),
            "result is not an object or an array of objects",
        ),
        (
            _frame(channel=protocol.ASSET_DETAIL, event="update", result={"dts": [1]}),
            "dts is not an object",
        ),
        ("x" * 300, "not JSON"),
        (_frame(channel="spot.balances", event="update"), "unknown channel 'spot.balances'"),
        (_frame(channel=protocol.ASSETS, event="frobnicate"), "unknown event 'frobnicate'"),
    ],
)
def test_an_invalid_frame_says_exactly_why_and_shows_its_start(raw: str, reason: str) -> None:
    assert protocol.parse(raw) == protocol.Invalid(reason, raw[:200])


def test_an_invalid_binary_frame_shows_its_start_as_text() -> None:
    raw = b"\xff" + b"y" * 300
    assert protocol.parse(raw) == protocol.Invalid("not JSON", ("\ufffd" + "y" * 300)[:200])


def test_an_update_keeps_its_channel_time_and_time_ms() -> None:
    raw = _frame(
        time=1716796362,
        time_ms=1716796362915,
        channel=protocol.ASSET_DETAIL,
        event="update",
        result={"u": 1, "dts": {}},
    )
    assert protocol.parse(raw) == protocol.Update(
        protocol.ASSET_DETAIL, [{"u": 1, "dts": {}}], 1716796362, 1716796362915
    )


# -- the push fast path (issue 16): what the slow path still decides ----------------


def _push(**fields: object) -> bytes:
    body: dict[str, object] = {"time_ms": 1, "channel": protocol.ASSET_DETAIL, "event": "update"}
    return orjson.dumps({**body, "result": {"u": 1, "dts": {}}, **fields})


def test_an_update_with_a_null_error_is_still_an_update() -> None:
    # "error": null takes the slow path (not the push fast path): same event.
    event = protocol.parse(_push(error=None))
    assert event == protocol.Update(protocol.ASSET_DETAIL, [{"u": 1, "dts": {}}], None, 1)


def test_an_asset_detail_result_without_dts_is_an_update() -> None:
    event = protocol.parse(_push(result={"u": 7}))
    assert event == protocol.Update(protocol.ASSET_DETAIL, [{"u": 7}], None, 1)


def test_times_that_are_not_integers_are_left_out() -> None:
    event = protocol.parse(_push(time="1716796362", time_ms=1716796362915.5))
    assert isinstance(event, protocol.Update)
    assert (event.time, event.time_ms) == (None, None)
