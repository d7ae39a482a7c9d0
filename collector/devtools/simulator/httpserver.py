"""A small HTTP/1.1 server on trio and h11: enough for the Gate REST look-alike.

Keep-alive, Content-Length bodies, one handler coroutine per request. A handler
may answer ``None`` to drop the connection without an answer (a lost response,
for fault injection).
"""

from __future__ import annotations

import email.utils
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import h11
import trio

MAX_BODY: Final = 1 << 20
READ_SIZE: Final = 65536


@dataclass(frozen=True)
class HttpRequest:
    """What a handler sees of a request: the target exactly as sent."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        """The target before ``?``, still percent-encoded."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        """The raw query string, as sent."""
        return self.target.partition("?")[2]


@dataclass
class HttpResponse:
    """A handler's answer."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[HttpRequest], Awaitable[HttpResponse | None]]


async def serve_http(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    date: Callable[[], float] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started(port)`` once listening."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    task_status.started(bound)

    async def connection(stream: trio.SocketStream) -> None:
        try:
            await _serve_connection(stream, handler, date)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await stream.aclose()

    await trio.serve_listeners(connection, listeners)


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(READ_SIZE))


async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> HttpRequest | None:
    event = await _next_event(conn, stream)
    if not isinstance(event, h11.Request):
        return None
    body = bytearray()
    while True:
        part = await _next_event(conn, stream)
        if isinstance(part, h11.Data):
            body += part.data
            if len(body) > MAX_BODY:
                raise h11.RemoteProtocolError("body too large")
        elif isinstance(part, h11.EndOfMessage):
            break
        else:
            return None
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
    return HttpRequest(
        event.method.decode("ascii"), event.target.decode("ascii"), headers, bytes(body)
    )


async def _serve_connection(
    stream: trio.SocketStream, handler: Handler, date: Callable[[], float] | None
) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        request = await _read_request(conn, stream)
        if request is None:
            return
        response = await handler(request)
        if response is None:
            return
        when = email.utils.formatdate(date() if date else None, usegmt=True)
        headers = [
            ("Content-Length", str(len(response.body))),
            ("Date", when),
            *response.headers.items(),
        ]
        if response.body:
            headers.append(("Content-Type", "application/json"))
        out = conn.send(h11.Response(status_code=response.status, headers=headers))
        out += conn.send(h11.Data(data=response.body)) if response.body else b""
        out += conn.send(h11.EndOfMessage())
        await stream.send_all(out)
        if conn.our_state is h11.MUST_CLOSE:
            return
        conn.start_next_cycle()
