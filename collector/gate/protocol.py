"""The unified WebSocket protocol, sans-IO: requests to build, frames to parse.

:func:`parse` never raises: a frame that is not JSON, names an unknown channel
or lacks what its kind needs becomes an :class:`Invalid` event with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import orjson

from collector.gate.errors import Refusal, find_refusal
from collector.gate.signing import ApiCredentials, ws_auth

ASSETS: Final = "unified.assets"
ASSET_DETAIL: Final = "unified.asset_detail"
PING: Final = "unified.ping"
PONG: Final = "unified.pong"
CHANNELS: Final = (ASSETS, ASSET_DETAIL)
_DATA_CHANNELS: Final = frozenset(CHANNELS)
SYSTEM_SUFFIX: Final = ".system"
_EMPTY: Final[dict[str, Any]] = {}


def request(channel: str, event: str, payload: list[str], now: int, creds: ApiCredentials) -> bytes:
    """A signed request; sign afresh (a new ``now``) for every (re)subscribe."""
    return orjson.dumps(
        {
            "time": now,
            "channel": channel,
            "event": event,
            "payload": payload,
            "auth": ws_auth(channel, event, now, creds),
        }
    )


def subscribe(channel: str, payload: list[str], now: int, creds: ApiCredentials) -> bytes:
    """``subscribe`` to ``channel``."""
    return request(channel, "subscribe", payload, now, creds)


def unsubscribe(channel: str, payload: list[str], now: int, creds: ApiCredentials) -> bytes:
    """``unsubscribe`` from ``channel``."""
    return request(channel, "unsubscribe", payload, now, creds)


def ping(now: int) -> bytes:
    """An application-level ``unified.ping``."""
    return orjson.dumps({"time": now, "channel": PING})


class ErrorKind(Enum):
    """What an error frame means for the session."""

    AUTH = "auth"  # replace the key; do not retry in a loop
    PERMISSION = "permission"  # the key lacks a permission: loud, retried slowly, no new key
    ARGUMENT = "argument"  # our request was wrong
    SERVER = "server"  # Gate's side: retry later


# What each refusal means for a session (the labels' meanings: collector.gate.errors).
# A permission, IP or lock refusal would refuse a new key too: never key churn.
_KIND_OF: Final[dict[Refusal, ErrorKind]] = {
    Refusal.KEY: ErrorKind.AUTH,
    Refusal.CLOCK: ErrorKind.AUTH,
    Refusal.NOT_FOUND: ErrorKind.AUTH,
    Refusal.IP: ErrorKind.PERMISSION,
    Refusal.PERMISSION: ErrorKind.PERMISSION,
    Refusal.LOCKED: ErrorKind.PERMISSION,
    Refusal.NOT_UNIFIED: ErrorKind.PERMISSION,
    Refusal.RATE: ErrorKind.SERVER,
    Refusal.SERVER: ErrorKind.SERVER,
    Refusal.ARGUMENT: ErrorKind.ARGUMENT,
}


@dataclass(frozen=True, slots=True)
class Ack:
    """A successful (un)subscribe."""

    channel: str
    event: str


@dataclass(slots=True)  # not frozen: one is made per push, and a frozen __init__ costs 4x
class Update:
    """An ``update`` push; ``results`` are the result objects (one or many)."""

    channel: str
    results: list[dict[str, Any]]
    time: int | None
    time_ms: int | None


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to ``unified.ping``."""

    time_ms: int | None


@dataclass(frozen=True, slots=True)
class Error:
    """An error answer."""

    channel: str
    event: str
    code: int | None
    message: str
    kind: ErrorKind


@dataclass(frozen=True, slots=True)
class Upgrade:
    """Gate asks the client to reconnect."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """A frame the collector cannot use; ``reason`` says why."""

    reason: str
    excerpt: str


Event = Ack | Update | Pong | Error | Upgrade | Invalid


def classify(code: int | None, message: str) -> ErrorKind:
    """A refusal by the label in its message wherever it is, else by its code.

    Gate puts the label inside the text: code 2 ``... ws_auth, info :
    {"label":"INVALID_SIGNATURE",...}`` (gateio/WebSocket-API#13), code 4
    ``{"label":"INVALID_KEY",...}``. Without a label only code 4 is auth; codes 1
    and 2 are our argument (retried, loud after a few), 3 is Gate's service error,
    never auth unless it carries an auth label.
    """
    refusal = find_refusal(message)
    if refusal is not None:
        return _KIND_OF[refusal]
    if code == 4:
        return ErrorKind.AUTH
    if code in (1, 2):
        return ErrorKind.ARGUMENT
    return ErrorKind.SERVER


class AuthenticationFailed(Exception):
    """Gate refused the account's request (what it means: ``errors.refusal_kind(reason)``)."""

    def __init__(self, account: int, message: str) -> None:
        super().__init__(f"account {account}: Gate refused the key: {message}")
        self.account = account
        self.reason = message


def _excerpt(frame: bytes | str) -> str:
    text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
    return text[:200]


def _int_or_none(value: object) -> int | None:
    return value if type(value) is int else None


def parse(frame: bytes | str) -> Event:
    """One frame -> one event. Never raises."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return Invalid("not JSON", _excerpt(frame))
    if type(message) is not dict:
        return Invalid("not a JSON object", _excerpt(frame))
    channel = message.get("channel")
    event = message.get("event")
    if event == "update" and channel in _DATA_CHANNELS and "error" not in message:
        return _update(channel, message, frame)  # the push: the common case first
    if event == "upgrade" or _is_system_upgrade(channel, event, message.get("result")):
        return Upgrade()
    if channel == PONG:
        return Pong(_int_or_none(message.get("time_ms")))
    if not isinstance(channel, str) or channel not in CHANNELS:
        return Invalid(f"unknown channel {channel!r}", _excerpt(frame))
    error = message.get("error")
    if error is not None:
        return _error(channel, event, error, frame)
    if event == "update":
        return _update(channel, message, frame)
    if event in ("subscribe", "unsubscribe"):
        result = message.get("result")
        if isinstance(result, dict) and result.get("status") == "success":
            return Ack(channel, event)
        return Error(channel, event, None, f"not confirmed: {result!r}"[:200], ErrorKind.SERVER)
    return Invalid(f"unknown event {event!r}", _excerpt(frame))


def _is_system_upgrade(channel: object, event: object, result: object) -> bool:
    """Gate's documented notice on its other products: ``<x>.system`` / ``update``."""
    return (
        isinstance(channel, str)
        and channel.endswith(SYSTEM_SUFFIX)
        and event == "update"
        and isinstance(result, dict)
        and result.get("type") == "upgrade"
    )


def _error(channel: str, event: object, error: object, frame: bytes | str) -> Event:
    if not isinstance(error, dict):
        return Invalid("error is not an object", _excerpt(frame))
    code = _int_or_none(error.get("code"))
    text = str(error.get("message", ""))
    return Error(channel, str(event), code, text, classify(code, text))


def _update(channel: str, message: dict[str, Any], frame: bytes | str) -> Event:
    result = message.get("result")
    if type(result) is dict:  # Gate's usual shape: one object
        results = [result]
    else:
        candidates: list[Any] = result if isinstance(result, list) else [result]
        results = [r for r in candidates if isinstance(r, dict)]
        if not results or len(results) != len(candidates):
            return Invalid("result is not an object or an array of objects", _excerpt(frame))
    if channel == ASSET_DETAIL and not all(type(r.get("dts", _EMPTY)) is dict for r in results):
        return Invalid("dts is not an object", _excerpt(frame))
    time, time_ms = message.get("time"), message.get("time_ms")
    return Update(
        channel,
        results,
        time if type(time) is int else None,
        time_ms if type(time_ms) is int else None,
    )
