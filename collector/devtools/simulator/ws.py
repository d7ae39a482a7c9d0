"""The unified WebSocket of the Gate look-alike.

Strict like Gate: every ``subscribe``/``unsubscribe`` must carry an ``auth``
signed with the sub-account's own key over ``channel=..&event=..&time=..``,
with ``time`` within 60 s. Acks, pongs, updates and errors have Gate's shapes.
Like Gate, a subscribe delivers nothing by itself and each subscribed (account,
channel) is pushed to only when the account changed (every ``change_interval``,
or when a test calls ``account.change``); pushers look every
``state.push_interval``. ``unified.assets`` values go out truncated to 2
decimals, ``unified.asset_detail`` values at full precision (as Gate's examples
show them), margin rates as ratios or in percent (``state.ws_rate_unit``).
``u`` is the account's user id, or counts up per channel (``u_mode="counter"``).
Subscribes can be refused (``account.refuse``: channel -> code 1/2/3,
``result.status: "fail"``; ``account.refuse_text`` the text).
Auth refusals carry Gate's JSON label, in code 4 or (``state.ws_auth_shape =
"ws_auth"``) inside Gate's code-2 ws_auth text; a key lacking one of
``state.required_perms`` is refused with FORBIDDEN. Over
``state.max_connections_per_ip`` a handshake is refused with 429 and Gate's error
body; the most connections an IP held at once are counted. A payload mixing
``!all`` with currencies is refused (code 2), as Gate does. Faults queued on an account
(:class:`~collector.devtools.simulator.state.WsFault`) are played at the next look.

This module answers requests; ``ws_push`` pushes, ``ws_faults`` plays faults,
``ws_link`` is the sending side they share, ``ws_values`` what pushes carry.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from collector.devtools.simulator.state import BrokerState, HandshakeFault, SimSubAccount
from collector.devtools.simulator.ws_link import Link
from collector.devtools.simulator.ws_push import Pusher
from collector.gate import signing
from collector.gate.protocol import ASSET_DETAIL, ASSETS, PING, PONG

TIME_WINDOW: Final = 60.0
# Where Gate's WebSocket front asks its auth service (as its refusals show it).
WS_AUTH_URL: Final = "http://127.0.0.1:8130/ws_auth"
_REFUSALS: Final = {
    1: "invalid argument struct",
    2: "invalid argument",
    3: "service error",
    # code 4 with a permission label: the key works but may not read unified data
    4: '{"label":"FORBIDDEN","message":"the API key has no permission for unified"}\n',
}


# Over the per-IP cap the handshake is refused with an HTTP status, as Gate (or its
# proxy) does: 429 and an error body in Gate's shape.
_JSON: Final = (b"Content-Type", b"application/json")
_OVER_CAP: Final = orjson.dumps(
    {"label": "TOO_MANY_REQUESTS", "message": "too many connections from this IP"}
)


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class _Connection:
    """Answers one connection's requests: ping, and signed (un)subscribes,
    which start and stop its :class:`Pusher` tasks."""

    link: Link
    nursery: trio.Nursery
    pushers: dict[tuple[int, str], trio.CancelScope] = field(default_factory=dict)

    async def on_message(self, raw: str | bytes) -> None:
        link = self.link
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await link.error("", "", 1, "invalid argument struct: not JSON")
            return
        if not isinstance(message, dict):
            await link.error("", "", 1, "invalid argument struct")
            return
        channel, event = message.get("channel"), message.get("event")
        if channel == PING:
            await link.send({**link.stamp(), "channel": PONG, "event": "", "result": None})
            return
        if channel not in (ASSETS, ASSET_DETAIL) or event not in ("subscribe", "unsubscribe"):
            await link.error(str(channel), str(event), 2, f"unknown channel or event: {channel}")
            return
        await self._request(message, channel, event)

    async def _request(self, message: dict[str, Any], channel: str, event: str) -> None:
        """A (un)subscribe of a known channel: authenticate, then act and ack."""
        link, state = self.link, self.link.state
        try:
            account = self._authenticate(message)
        except _Refused as refused:
            state.ws_events["auth_refused"] += 1
            code, text = _shaped(state.ws_auth_shape, refused)
            await link.error(channel, event, code, text)
            return
        key = str(message["auth"]["KEY"])
        refusal = account.refuse.get(channel)
        if event == "subscribe" and refusal:
            state.ws_events["subscribe_refused"] += 1
            text = account.refuse_text.get(channel) or _REFUSALS.get(refusal, "refused")
            await link.error(channel, event, refusal, text, "fail")
            return
        payload = message.get("payload")
        if event == "subscribe" and _mixed(payload):  # Gate: a list, or ["!all"], not both
            state.ws_events["subscribe_refused"] += 1
            await link.error(channel, event, 2, f"invalid argument: payload {payload}", "fail")
            return
        self._stop_pusher(account, channel)
        if event == "subscribe":
            self._start_pusher(account, channel, _payload(payload), key)
        state.ws_events[event] += 1
        ack = {"channel": channel, "event": event, "result": {"status": "success"}}
        await link.send({**link.stamp(), **ack})

    def _authenticate(self, message: dict[str, Any]) -> SimSubAccount:
        state = self.link.state
        auth = message.get("auth")
        if not isinstance(auth, dict) or auth.get("method") != "api_key":
            raise _Refused(2, _label("INVALID_KEY", "auth with method api_key is required"))
        key = state.keys.get(str(auth.get("KEY")))
        if key is None:
            raise _Refused(4, _label("INVALID_KEY", "Invalid key provided"))
        account = state.accounts.get(key.user_id)
        if account is None or account.status != "enabled":
            raise _Refused(4, _label("INVALID_KEY", "the account is disabled"))
        refusal = state.key_refusal(key, self.link.peer())
        if refusal is not None:
            raise _Refused(4, refusal)
        sent = message.get("time")
        if type(sent) is not int or abs(state.now() - sent) > TIME_WINDOW:
            raise _Refused(2, _label("REQUEST_EXPIRED", "time is out of the 60s window"))
        expected = signing.ws_signature(key.secret, message["channel"], message["event"], sent)
        if not signing.signatures_match(expected, str(auth.get("SIGN"))):
            raise _Refused(4, _label("INVALID_SIGNATURE", "Signature mismatch"))
        return account

    def _stop_pusher(self, account: SimSubAccount, channel: str) -> None:
        scope = self.pushers.pop((account.gate_id, channel), None)
        if scope is not None:
            scope.cancel()

    def _start_pusher(
        self, account: SimSubAccount, channel: str, payload: list[str], key: str
    ) -> None:
        scope = trio.CancelScope()
        self.pushers[(account.gate_id, channel)] = scope
        pusher = Pusher(self.link, account, channel, payload, key)
        self.nursery.start_soon(pusher.run, scope)


def _label(label: str, message: str) -> str:
    """Gate's auth refusal text: its REST error body as a JSON string."""
    return orjson.dumps({"label": label, "message": message}).decode() + "\n"


def _shaped(shape: str, refused: _Refused) -> tuple[int, str]:
    """An auth refusal as ``shape`` says Gate sends it: code 4 with the JSON label, or
    ("ws_auth") code 2 with the label inside Gate's ws_auth text
    (gateio/WebSocket-API#13)."""
    if shape != "ws_auth" or refused.code != 4:
        return refused.code, refused.message
    text = f"http get status code err, status : 400, url : {WS_AUTH_URL}, info : {refused.message}"
    return 2, text


def _mixed(raw: object) -> bool:
    """A payload naming ``!all`` beside currencies."""
    return isinstance(raw, list) and "!all" in raw and len(raw) > 1


def _payload(raw: object) -> list[str]:
    if isinstance(raw, list) and raw and all(isinstance(c, str) for c in raw):
        return raw
    return ["!all"]


async def serve_unified(
    state: BrokerState,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the unified WebSocket until cancelled; ``task_status.started(port)``."""

    async def handler(request: WebSocketRequest) -> None:
        if state.handshake_faults:
            await _refuse(request, state.handshake_faults.popleft())
            state.ws_events["handshake_refused"] += 1
            return
        ip = _ip(request)
        if state.max_connections_per_ip is not None and (
            state.ws_per_ip[ip] >= state.max_connections_per_ip
        ):
            state.ws_refused_over_cap += 1
            await request.reject(429, extra_headers=[_JSON], body=_OVER_CAP)
            return
        # Counted before the handshake's first await: two at once cannot both fit.
        state.ws_per_ip[ip] += 1
        state.ws_peak_per_ip[ip] = max(state.ws_peak_per_ip[ip], state.ws_per_ip[ip])
        try:
            ws = await request.accept()
        except BaseException:
            state.ws_per_ip[ip] -= 1
            raise
        state.ws_connections += 1
        try:
            async with trio.open_nursery() as nursery:
                connection = _Connection(Link(state, ws), nursery)
                try:
                    while True:
                        await connection.on_message(await ws.get_message())
                except ConnectionClosed:
                    pass
                nursery.cancel_scope.cancel()
        finally:
            state.ws_connections -= 1
            state.ws_per_ip[ip] -= 1

    starter: Any = _Starter(task_status)
    await serve_websocket(handler, host, port, ssl_context, task_status=starter)


def _ip(request: WebSocketRequest) -> str:
    remote = request.remote
    return remote if isinstance(remote, str) else str(remote.address)


async def _refuse(request: WebSocketRequest, fault: HandshakeFault) -> None:
    headers = [] if fault.retry_after is None else [(b"Retry-After", b"%d" % fault.retry_after)]
    await request.reject(fault.status, extra_headers=headers, body=fault.body)


@dataclass
class _Starter:
    """Adapts serve_websocket's ``started(server)`` to ``started(port)``."""

    outer: trio.TaskStatus[int]

    def started(self, server: Any = None) -> None:
        self.outer.started(int(server.port))
