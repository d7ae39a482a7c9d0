"""The unified WebSocket of the Gate look-alike.

Strict like Gate: every ``subscribe``/``unsubscribe`` must carry an ``auth``
signed with the sub-account's own key over ``channel=..&event=..&time=..``,
with ``time`` within 60 s. Acks, pongs, updates and errors have Gate's shapes.
Like Gate, a subscribe delivers nothing by itself and each subscribed (account,
channel) is pushed to only when the account changed (every ``change_interval``,
or when a test calls ``account.change``); pushers look every
``state.push_interval``. Values go out truncated to 2 decimals (the REST
snapshot has full precision). ``u`` is the account's user id, or counts up per
channel (``u_mode="counter"``). Subscribes can be refused (``account.refuse``:
channel -> code 1/2/3, ``result.status: "fail"``). Faults queued on an account
(:class:`~collector.devtools.simulator.state.WsFault`) are played at the next look.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from collector.devtools.simulator.state import BrokerState, SimSubAccount, WsFault
from collector.gate import signing
from collector.gate.protocol import ASSET_DETAIL, ASSETS, PING, PONG
from collector.points.schema import ASSETS_FIELDS

TIME_WINDOW: Final = 60.0
FIRST_U: Final = 1000


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class _Connection:
    state: BrokerState
    ws: WebSocketConnection
    nursery: trio.Nursery
    pushers: dict[tuple[int, str], trio.CancelScope] = field(default_factory=dict)
    silent_until: float = 0.0

    def _stamp(self) -> dict[str, int]:
        now = self.state.now()
        return {"time": int(now), "time_ms": int(now * 1000)}

    async def send(self, body: dict[str, Any]) -> bool:
        """Send unless silent; False when the connection is gone."""
        if trio.current_time() < self.silent_until:
            return True
        try:
            await self.ws.send_message(orjson.dumps(body).decode())
        except ConnectionClosed:
            return False
        return True

    async def on_message(self, raw: str | bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await self._error("", "", 1, "invalid argument struct: not JSON")
            return
        if not isinstance(message, dict):
            await self._error("", "", 1, "invalid argument struct")
            return
        channel, event = message.get("channel"), message.get("event")
        if channel == PING:
            await self.send({**self._stamp(), "channel": PONG, "event": "", "result": None})
            return
        if channel not in (ASSETS, ASSET_DETAIL) or event not in ("subscribe", "unsubscribe"):
            await self._error(str(channel), str(event), 2, f"unknown channel or event: {channel}")
            return
        try:
            account = self._authenticate(message)
        except _Refused as refused:
            self.state.ws_events["auth_refused"] += 1
            await self._error(channel, event, refused.code, refused.message)
            return
        key = str(message["auth"]["KEY"])
        refusal = account.refuse.get(channel)
        if event == "subscribe" and refusal:
            self.state.ws_events["subscribe_refused"] += 1
            await self._error(channel, event, refusal, _REFUSALS.get(refusal, "refused"), "fail")
            return
        if event == "subscribe":
            self._start_pusher(account, channel, _payload(message.get("payload")), key)
        else:
            scope = self.pushers.pop((account.gate_id, channel), None)
            if scope is not None:
                scope.cancel()
        self.state.ws_events[event] += 1
        await self.send(
            {**self._stamp(), "channel": channel, "event": event, "result": {"status": "success"}}
        )

    async def _error(
        self, channel: str, event: str, code: int, text: str, status: str | None = None
    ) -> None:
        result = None if status is None else {"status": status}
        body = {**self._stamp(), "channel": channel, "event": event, "result": result}
        await self.send({**body, "error": {"code": code, "message": text}})

    def _authenticate(self, message: dict[str, Any]) -> SimSubAccount:
        auth = message.get("auth")
        if not isinstance(auth, dict) or auth.get("method") != "api_key":
            raise _Refused(2, "INVALID_KEY: auth with method api_key is required")
        key = self.state.keys.get(str(auth.get("KEY")))
        if key is None:
            raise _Refused(4, "INVALID_KEY: invalid key")
        account = self.state.accounts.get(key.user_id)
        if account is None or account.status != "enabled":
            raise _Refused(4, "INVALID_KEY: the account is disabled")
        refusal = self.state.key_refusal(key, self._peer())
        if refusal is not None:
            raise _Refused(4, refusal)
        sent = message.get("time")
        if type(sent) is not int or abs(self.state.now() - sent) > TIME_WINDOW:
            raise _Refused(2, "REQUEST_EXPIRED: time is out of the 60s window")
        expected = signing.ws_signature(key.secret, message["channel"], message["event"], sent)
        if not signing.signatures_match(expected, str(auth.get("SIGN"))):
            raise _Refused(4, "INVALID_SIGNATURE: signature mismatch")
        return account

    def _peer(self) -> str | None:
        remote = self.ws.remote
        return None if isinstance(remote, str) else str(remote.address)

    def _start_pusher(
        self, account: SimSubAccount, channel: str, payload: list[str], key: str
    ) -> None:
        old = self.pushers.pop((account.gate_id, channel), None)
        if old is not None:
            old.cancel()
        scope = trio.CancelScope()
        self.pushers[(account.gate_id, channel)] = scope
        self.nursery.start_soon(self._push_forever, scope, account, channel, payload, key)

    async def _push_forever(
        self,
        scope: trio.CancelScope,
        account: SimSubAccount,
        channel: str,
        payload: list[str],
        key: str,
    ) -> None:
        self.state.active[account.gate_id] += 1
        self.state.keys_in_use[key] += 1
        try:
            with scope:
                await self._push_loop(account, channel, payload, key)
        finally:
            self.state.active[account.gate_id] -= 1
            self.state.keys_in_use[key] -= 1

    async def _push_loop(
        self, account: SimSubAccount, channel: str, payload: list[str], key: str
    ) -> None:
        if self.state.burst:
            if channel == ASSET_DETAIL:
                await self._burst(account)
            return
        last_ms = 0
        sent_version = account.version  # a subscribe delivers no state by itself
        while True:
            await trio.sleep(self.state.push_interval)
            known = self.state.keys.get(key)
            if (
                known is None
                or account.status != "enabled"
                or self.state.key_refusal(known, self._peer()) is not None
            ):
                await self.ws.aclose(code=1008, reason="key revoked or account disabled")
                return
            if account.ws_faults and await self._play_fault(account, channel):
                return
            if trio.current_time() < self.silent_until:
                continue  # silent: nothing is produced, so nothing is lost either
            if not self.state.paused:
                self._maybe_change(account)
            if account.version == sent_version:
                continue  # nothing changed: Gate pushes nothing
            sent_version = account.version
            last_ms = max(int(self.state.now() * 1000), last_ms + 1)
            if not await self._push(account, channel, payload, last_ms):
                return

    def _maybe_change(self, account: SimSubAccount) -> None:
        interval = account.change_interval
        if interval is None:
            interval = self.state.change_interval
        if interval <= 0:
            return
        now = trio.current_time()
        if account.changed_at is None:
            account.changed_at = now - interval  # the first look sees a change
        if now >= account.changed_at + interval:
            account.change(now)

    async def _burst(self, account: SimSubAccount) -> None:
        """Send ``state.burst`` pre-encoded updates back to back (benchmarks)."""
        state = self.state
        dts = orjson.dumps(
            {c: _detail_values(0, i) for i, c in enumerate(account.currencies)}
        ).decode()
        template = (
            '{"time":%d,"time_ms":%d,"channel":"unified.asset_detail","event":"update",'
            '"result":{"u":%d,"t":%d,"dts":' + dts + "}}"
        )
        key = (account.gate_id, ASSET_DETAIL)
        first_u = state.sequence.get(key, FIRST_U - 1) + 1
        start_ms = int(state.now() * 1000)
        if state.burst_started is None:
            state.burst_started = trio.current_time()
            state.burst_started_monotonic = time.monotonic()
        send = self.ws.send_message
        for i in range(state.burst):
            ms = start_ms + i
            try:
                await send(template % (ms // 1000, ms, first_u + i, ms // 1000))
            except ConnectionClosed:
                return
            state.burst_sent += 1
        state.sequence[key] = first_u + state.burst - 1
        state.pushed[key] += state.burst
        state.burst_finished = trio.current_time()

    async def _play_fault(self, account: SimSubAccount, channel: str) -> bool:
        """Play the next fault; True when the connection is gone."""
        fault: WsFault = account.ws_faults[0]
        if fault.kind == "gap" and fault.channel != channel:
            return False
        account.ws_faults.popleft()
        self.state.ws_events[f"fault_{fault.kind}"] += 1
        if fault.kind == "gap":
            key = (account.gate_id, channel)
            self.state.sequence[key] = self.state.sequence.get(key, FIRST_U) + fault.count
            self.state.skipped[key] += fault.count
        elif fault.kind == "drop":
            await self.ws.aclose()
            return True
        elif fault.kind == "silence":
            self.silent_until = trio.current_time() + fault.seconds
        elif fault.kind == "malformed":
            await self.ws.send_message('{"channel": "unified.asset_detail", "event": "upd')
        elif fault.kind == "error":
            await self._error(channel, "update", 3, "service error: injected")
        elif fault.kind == "upgrade":
            await self.send({**self._stamp(), "channel": "", "event": "upgrade", "result": None})
        elif fault.kind == "system_upgrade":
            notice = {
                "type": "upgrade",
                "msg": "The connection will soon be closed for a "
                "service upgrade. Please reconnect.",
            }
            await self.send(
                {**self._stamp(), "channel": "unified.system", "event": "update", "result": notice}
            )
        return False

    async def _push(
        self, account: SimSubAccount, channel: str, payload: list[str], time_ms: int
    ) -> bool:
        """Send one update; it counts as pushed only once it went out."""
        key = (account.gate_id, channel)
        identity = account.u_mode == "identity"
        u = account.gate_id if identity else self.state.sequence.get(key, FIRST_U - 1) + 1
        t = time_ms // 1000
        values: dict[str, dict[str, str]]
        if channel == ASSETS:
            values = {"": _ws_assets(account)}
            result: dict[str, Any] = {"u": u, "t": t, **values[""]}
        else:
            wanted = account.currencies if payload == ["!all"] else payload
            values = {
                c: _ws_detail(account, i) for i, c in enumerate(account.currencies) if c in wanted
            }
            result = {"u": u, "t": t, "dts": values}
        frame = {"time": t, "time_ms": time_ms, "channel": channel, "event": "update"}
        if not await self.send({**frame, "result": result}):
            return False
        if not identity:
            self.state.sequence[key] = u
        self.state.pushed[key] += 1
        for currency, sent in values.items():
            self.state.last_pushed[(account.gate_id, channel, currency)] = sent
        return True


def _payload(raw: object) -> list[str]:
    if isinstance(raw, list) and raw and all(isinstance(c, str) for c in raw):
        return raw
    return ["!all"]


_REFUSALS: Final = {
    1: "invalid argument struct",
    2: "invalid argument",
    3: "service error",
    # code 4 with a permission label: the key works but may not read unified data
    4: '{"label":"FORBIDDEN","message":"the API key has no permission for unified"}\n',
}
_WS_ASSETS: Final = {long: short for short, long in ASSETS_FIELDS.items()}
_WS_DETAIL: Final = {"available": "a", "freeze": "f", "equity": "e", "total_liab": "tl"}


def truncate2(text: str) -> str:
    """A decimal string cut (not rounded) to 2 decimals, as Gate's pushes carry them."""
    whole, _, fraction = text.partition(".")
    return f"{whole}.{(fraction + '00')[:2]}"


def _ws_assets(account: SimSubAccount) -> dict[str, str]:
    values = {_WS_ASSETS[k]: truncate2(v) for k, v in account.assets().items()}
    values["c"] = "0"  # deprecated; Gate still sends it
    return values


def _ws_detail(account: SimSubAccount, index: int) -> dict[str, str]:
    balance = account.balance(index)
    values = {_WS_DETAIL[k]: truncate2(v) for k, v in balance.items()}
    values["b"] = truncate2(balance["equity"])  # WS-only: no REST twin
    return values


def _detail_values(n: int, i: int) -> dict[str, str]:
    base = 1000.0 * (i + 1) + n * 0.5
    return {
        "a": f"{base:.6f}",
        "f": f"{n % 3:.6f}",
        "e": f"{base + n % 3:.6f}",
        "tl": "0.00",
        "b": f"{base + n % 3:.6f}",
    }


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
        ws = await request.accept()
        state.ws_connections += 1
        try:
            async with trio.open_nursery() as nursery:
                connection = _Connection(state, ws, nursery)
                try:
                    while True:
                        await connection.on_message(await ws.get_message())
                except ConnectionClosed:
                    pass
                nursery.cancel_scope.cancel()
        finally:
            state.ws_connections -= 1

    starter: Any = _Starter(task_status)
    await serve_websocket(handler, host, port, ssl_context, task_status=starter)


@dataclass
class _Starter:
    """Adapts serve_websocket's ``started(server)`` to ``started(port)``."""

    outer: trio.TaskStatus[int]

    def started(self, server: Any = None) -> None:
        self.outer.started(int(server.port))
