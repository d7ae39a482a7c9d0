"""One unified WebSocket connection's sending side, shared by its request
handler and its pushers: Gate's ``time``/``time_ms`` stamp, Gate's error shape,
silence (a fault: nothing goes out until ``silent_until``) and the peer's address."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from collector.devtools.simulator.state import BrokerState


@dataclass
class Link:
    """The sending side of one connection; its request handler and pushers share it."""

    state: BrokerState
    ws: WebSocketConnection
    silent_until: float = 0.0
    # Read once while the socket is connected: getpeername() on a socket the client
    # has already closed raises ENOTCONN, which must not crash the simulator.
    _peer: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        try:
            remote = self.ws.remote
        except OSError:
            return
        self._peer = None if isinstance(remote, str) else str(remote.address)

    def stamp(self) -> dict[str, int]:
        now = self.state.now()
        return {"time": int(now), "time_ms": int(now * 1000)}

    def silent(self) -> bool:
        return trio.current_time() < self.silent_until

    async def send(self, body: dict[str, Any]) -> bool:
        """Send unless silent; False when the connection is gone."""
        if self.silent():
            return True
        try:
            await self.ws.send_message(orjson.dumps(body).decode())
        except ConnectionClosed:
            return False
        return True

    async def error(
        self, channel: str, event: str, code: int, text: str, status: str | None = None
    ) -> None:
        result = None if status is None else {"status": status}
        body = {**self.stamp(), "channel": channel, "event": event, "result": result}
        await self.send({**body, "error": {"code": code, "message": text}})

    def peer(self) -> str | None:
        """The client's IP address, as it was when the connection opened."""
        return self._peer
