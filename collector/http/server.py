"""A small, bounded HTTP/1.1 server on trio and h11 for the collector's endpoint.

One request per connection (``Connection: close``): scrapers and probes open a
connection each time, and a server that keeps nothing open cannot be held open.
Bounded so that no client can hurt the data path: at most ``MAX_CONNECTIONS``
at once (the rest are closed unanswered), ``READ_TIMEOUT`` to send a request,
``MAX_REQUEST`` bytes of head, no request bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import h11
import trio

from collector.logging import get_logger

log = get_logger(__name__)

MAX_CONNECTIONS: Final = 16
READ_TIMEOUT: Final = 5.0
MAX_REQUEST: Final = 8192
READ_SIZE: Final = 4096


@dataclass
class Response:
    """A handler's answer."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


# Handlers are plain functions: they read counters and must never wait on I/O.
Handler = Callable[[str, str], Response]


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; ValueError naming the value otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f'must look like "127.0.0.1:9108" (host:port), got {value!r}')
    return host.strip("[]"), int(port)


async def open_listeners(listen: str) -> list[trio.SocketListener]:
    """Bind ``host:port`` (OSError when taken): done before serving, so it fails plainly."""
    host, port = parse_listen(listen)
    return await trio.open_tcp_listeners(port, host=host)


def bound_port(listeners: list[trio.SocketListener]) -> int:
    """The port the listeners got (the one asked for, or the kernel's pick for 0)."""
    return int(listeners[0].socket.getsockname()[1])


async def serve(handler: Handler, listeners: list[trio.SocketListener]) -> None:
    """Serve ``handler(method, target)`` on bound ``listeners`` until cancelled."""
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def connection(stream: trio.SocketStream) -> None:
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            log.warning("http_connection_refused", limit=MAX_CONNECTIONS)
            await stream.aclose()
            return
        try:
            await _serve_one(stream, handler)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        except Exception as exc:  # a failure answering one client never ends the endpoint
            log.error("http_request_crashed", error=repr(exc)[:300])
        finally:
            limiter.release()
            await stream.aclose()

    await trio.serve_listeners(connection, listeners)


async def _serve_one(stream: trio.SocketStream, handler: Handler) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
    request: h11.Request | None = None
    with trio.move_on_after(READ_TIMEOUT):
        try:
            request = await _read_request(conn, stream)
        except h11.RemoteProtocolError as exc:
            # Too large or not HTTP: say so in one line (h11 knows the status), then close.
            await _send(conn, stream, Response(exc.error_status_hint, f"{exc}\n".encode()))
            return
    if request is None:
        return
    if request.method != b"GET":
        response = Response(405, b"only GET\n", headers={"Allow": "GET"})
    else:
        response = handler(request.method.decode(), request.target.decode("ascii", "replace"))
    await _send(conn, stream, response)


async def _send(conn: h11.Connection, stream: trio.SocketStream, response: Response) -> None:
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        ("Connection", "close"),
        *response.headers.items(),
    ]
    out = conn.send(h11.Response(status_code=response.status, headers=headers))
    out += conn.send(h11.Data(data=response.body))
    out += conn.send(h11.EndOfMessage())
    with trio.move_on_after(READ_TIMEOUT):
        await stream.send_all(out)


async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            return event
        if event is not h11.NEED_DATA:
            return None
        data = await stream.receive_some(READ_SIZE)
        conn.receive_data(data)
        if not data:
            return None
