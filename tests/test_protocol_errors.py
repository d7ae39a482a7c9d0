"""WS error frames -> what the session does: every code and every auth label in a message.

Gate puts the auth label inside the message (code 2 or 4, sometimes a JSON
string), so a label anywhere in it, in any case, means "replace the key".
"""

from __future__ import annotations

import json

import pytest

from collector.gate import protocol
from collector.gate.protocol import ErrorKind, classify, is_clock_error

AUTH, ARGUMENT, SERVER = ErrorKind.AUTH, ErrorKind.ARGUMENT, ErrorKind.SERVER


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (2, "INVALID_KEY", AUTH),
        (2, "invalid_key: key not found", AUTH),
        (2, "INVALID_SIGNATURE", AUTH),
        (2, "REQUEST_EXPIRED", AUTH),
        (2, "AUTH failed", AUTH),
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


@pytest.mark.parametrize(
    ("message", "clock"),
    [
        ("REQUEST_EXPIRED", True),
        ('{"label":"request_expired"}', True),
        ("INVALID_KEY", False),
        ("", False),
    ],
)
def test_only_request_expired_is_a_clock_error(message: str, clock: bool) -> None:
    assert is_clock_error(message) is clock


def test_an_error_without_a_message_has_empty_text() -> None:
    raw = json.dumps({"channel": protocol.ASSETS, "event": "subscribe", "error": {"code": 3}})
    assert protocol.parse(raw) == protocol.Error(protocol.ASSETS, "subscribe", 3, "", SERVER)


def test_an_error_code_that_is_not_an_int_is_none() -> None:
    raw = json.dumps(
        {"channel": protocol.ASSETS, "event": "subscribe", "error": {"code": "4", "message": "x"}}
    )
    assert protocol.parse(raw) == protocol.Error(protocol.ASSETS, "subscribe", None, "x", SERVER)
