"""Shared by the resilience tests: a real WebSocket server that refuses handshakes."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
from trio_websocket import WebSocketRequest, serve_websocket


@dataclass
class Refuser:
    """What the server answers every handshake with; it notes when each came (trio time)."""

    status: int = 429
    body: bytes | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v4/ws/unified"

    async def handler(self, request: WebSocketRequest) -> None:
        self.attempts.append(trio.current_time())
        await request.reject(self.status, extra_headers=self.headers, body=self.body)


async def start_refuser(nursery: trio.Nursery, refuser: Refuser) -> Refuser:
    """Serve ``refuser`` on a free loopback port (a real trio-websocket server)."""
    server = await nursery.start(serve_websocket, refuser.handler, "127.0.0.1", 0, None)
    refuser.port = int(server.port)
    return refuser
