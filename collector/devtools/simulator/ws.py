"""The unified WebSocket of the Gate look-alike.

Strict like Gate: every ``subscribe``/``unsubscribe`` must carry an ``auth``
signed with the sub-account's own key over ``channel=..&event=..&time=..``,
with ``time`` within 60 s. Acks, pongs, updates and errors have Gate's shapes.
Each subscribed (account, channel) gets pushes every ``state.push_interval``;
``u`` counts up per channel or is the account's user id (``u_mode``). Faults
queued on an account (:class:`~collector.devtools.simulator.state.WsFault`) are played
into its next push.
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

    async def _error(self, channel: str, event: str, code: int, text: str) -> None:
        body = {**self._stamp(), "channel": channel, "event": event, "result": None}
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
        while True:
            await trio.sleep(self.state.push_interval)
            if self.state.paused:
                continue
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
            last_ms = max(int(self.state.now() * 1000), last_ms + 1)
            if not await self._push(account, channel, payload, last_ms):
                return

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
        return False

    async def _push(
        self, account: SimSubAccount, channel: str, payload: list[str], time_ms: int
    ) -> bool:
        """Send one update; it counts as pushed only once it went out."""
        key = (account.gate_id, channel)
        n = self.state.pushed[key]
        identity = account.u_mode == "identity"
        u = account.gate_id if identity else self.state.sequence.get(key, FIRST_U - 1) + 1
        t = time_ms // 1000
        values: dict[str, dict[str, str]]
        if channel == ASSETS:
            values = {"": _assets_values(n, account.gate_id)}
            result: dict[str, Any] = {"u": u, "t": t, **values[""]}
        else:
            wanted = account.currencies if payload == ["!all"] else payload
            values = {
                c: _detail_values(n, i) for i, c in enumerate(account.currencies) if c in wanted
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


def _assets_values(n: int, account: int = 0) -> dict[str, str]:
    """The seed's example, moved per account (so accounts differ) and per push."""
    scale = 1 + (account % 97) / 10
    risk = account % 89
    return {
        "r": f"{18 + risk / 2 + (n % 7) * 0.01:.2f}",
        "R": f"{20 + risk + (n % 5) * 0.01:.2f}",
        "b": f"{-1005719.51 * scale + n:.2f}",
        "e": f"{617985.29 * scale + n:.2f}",
        "l": f"{1293939.74 * scale + n:.2f}",
        "T": f"{675222.27 * scale + n:.2f}",
        "a": f"{-1432719.62 * scale + n:.2f}",
        "c": "0",  # deprecated; Gate still sends it
    }


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
