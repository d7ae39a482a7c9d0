"""Frame rules found by mutation testing (tests/MUTATION.md): whole events, by value."""

from __future__ import annotations

import orjson

from collector.gate.protocol import ASSETS, Ack, Error, ErrorKind, Invalid, parse


def frame(**message: object) -> bytes:
    return orjson.dumps(message)


def test_json_that_is_not_an_object_is_invalid_with_its_start() -> None:
    assert parse(b"[1, 2]") == Invalid("not a JSON object", "[1, 2]")
    assert parse('"text"') == Invalid("not a JSON object", '"text"')


def test_an_unsubscribe_ack_is_an_ack() -> None:
    answer = frame(channel=ASSETS, event="unsubscribe", result={"status": "success"})
    assert parse(answer) == Ack(ASSETS, "unsubscribe")


def test_an_unconfirmed_subscribe_is_a_server_error_of_its_channel() -> None:
    answer = frame(channel=ASSETS, event="subscribe", result={"status": "fail"})
    expected = "not confirmed: {'status': 'fail'}"
    assert parse(answer) == Error(ASSETS, "subscribe", None, expected, ErrorKind.SERVER)


def test_the_unconfirmed_text_is_cut_at_200_characters() -> None:
    answer = frame(channel=ASSETS, event="unsubscribe", result={"status": "x" * 500})
    event = parse(answer)
    assert isinstance(event, Error)
    assert event.message == ("not confirmed: {'status': '" + "x" * 500)[:200]
    assert len(event.message) == 200
