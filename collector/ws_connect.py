"""Opening one client WebSocket: TCP (optionally from a local address), TLS, handshake.

TLS uses the system CAs or a private CA file (one context per file, shared by
all sessions). trio-websocket gets a 64-message queue and reads what the stream
has: its defaults (a one-message queue, 4 KiB reads) cost a task switch per
message when frames arrive together; the queue stays bounded.

:func:`queued_message` takes a message trio-websocket already holds without the
schedule point ``get_message`` always makes (a trip through trio's run loop:
~18 µs on a 2.5 GHz core, more than parsing the frame): a session drains what a
read brought in (at most the queue's 64 messages) and waits only when nothing
is left. It reads the connection's own queue, the one ``get_message`` reads;
``tests/test_ws_connect.py`` proves the pinned trio-websocket still has it.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

MESSAGE_QUEUE_SIZE: Final = 64
RECEIVE_BUFFER_SIZE: Final = None  # read what the stream has (its default: 4 KiB at a time)
CONNECT_ERRORS: Final = (
    OSError,
    trio.BrokenResourceError,
    trio.TooSlowError,
    ssl.SSLError,
    HandshakeError,
    ConnectionRejected,
    DisconnectionTimeout,
    ConnectionClosed,
)


def queued_message(ws: WebSocketConnection) -> str | bytes | None:
    """The next message if trio-websocket already holds one, else None; no schedule point.

    Raises ``ConnectionClosed`` as ``get_message`` would, once the queue is closed.
    """
    try:
        message: str | bytes = ws._recv_channel.receive_nowait()
    except trio.WouldBlock:
        return None
    except (trio.ClosedResourceError, trio.EndOfChannel):
        raise ConnectionClosed(ws.closed) from None
    return message


@functools.lru_cache(maxsize=8)
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """One client TLS context per CA file (system CAs when None), shared by all sessions."""
    return ssl.create_default_context(cafile=ca_file)


@dataclass(frozen=True)
class Target:
    """Where to connect, and how."""

    url: str
    ca_file: str | None = None
    local_address: str | None = None
    timeout: float = 15.0


async def open_websocket(
    nursery: trio.Nursery, target: Target, limiter: trio.CapacityLimiter | None = None
) -> WebSocketConnection | str:
    """The open connection, or why it could not be opened (one line)."""
    try:
        if limiter is None:
            return await _handshake(nursery, target)
        async with limiter:  # a few handshakes at a time: no stampede
            return await _handshake(nursery, target)
    except CONNECT_ERRORS as exc:
        # trio wraps a TLS refusal in BrokenResourceError: name the cause (e.g. the CA).
        cause = f" caused by {exc.__cause__!r}" if exc.__cause__ is not None else ""
        return f"connect to {target.url} failed: {exc!r}{cause}"


async def _handshake(nursery: trio.Nursery, target: Target) -> WebSocketConnection:
    url = urlsplit(target.url)
    secure = url.scheme == "wss"
    host = url.hostname or ""
    port = url.port or (443 if secure else 80)
    resource = url.path + (f"?{url.query}" if url.query else "")
    with trio.fail_after(target.timeout):
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
        stream = await trio.open_tcp_stream(host, port, local_address=target.local_address)
        if secure:
            stream = trio.SSLStream(stream, tls_context(target.ca_file), server_hostname=host)
            await stream.do_handshake()
        return await wrap_client_stream(
            nursery,
            stream,
            host,
            resource,
            message_queue_size=MESSAGE_QUEUE_SIZE,
            receive_buffer_size=RECEIVE_BUFFER_SIZE,
        )
