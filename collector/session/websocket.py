"""Opening one client WebSocket: TCP (optionally from a local address), TLS, handshake.

TLS uses the system CAs or a private CA file (one context per file, shared by
all sessions). trio-websocket gets a 64-message queue and reads what the stream
has: its defaults (a one-message queue, 4 KiB reads) cost a task switch per
message when frames arrive together; the queue stays bounded.

Both ends of trio-websocket's message queue make a schedule point per message
(a trip through trio's run loop: ~18 µs on a 2.5 GHz core, more than parsing the
frame): its reader task puts each message with ``send``, which always yields,
and ``get_message`` always yields too. So the reader puts with ``send_nowait``
while the queue has room (:class:`PutWithoutYield`; it still waits when the
queue is full, so the queue stays bounded) and yields once per network read,
and :func:`queued_message` takes what the queue holds without a yield: a session
drains what a read brought in and waits only when nothing is left. Both use the
connection's own queue, which is private to trio-websocket: there is no public
way to take a message without a schedule point.

So the version is **pinned** (``trio-websocket==0.12.2`` in ``pyproject.toml``,
:data:`PINNED_VERSION` here) and checked: with any other version installed, or a
connection without those attributes, both helpers step aside and the session uses
only the public API (``get_message``; the library's own put), which is correct, just
slower; :func:`fast_queue_note` says which at start, and :func:`quick_put_installed`
and :func:`queued_count` say so of one connection.
``tests/integration/test_ws_connect.py`` proves that the pinned version still has the
queue and that messages keep their order.

A refused handshake (any HTTP status, with or without a body) is an answer, not
a crash: trio-websocket raises ``ConnectionRejected`` from its *reader task*, in
whatever nursery it was given, so the rejection used to escape the session's
nursery (and the supervisor's) in a race with the handshake wait. The reader is
started through :class:`_ReaderGuard`, which keeps what it raises and ends the
wait; :func:`open_websocket` returns a :class:`Refused` (status, ``Retry-After``,
an excerpt of the body) or a one-line reason, never raises for the server's sake.
"""

from __future__ import annotations

import email.utils
import functools
import importlib.metadata
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
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

PINNED_VERSION: Final = "0.12.2"
# Only the pinned version's private queue is touched.
FAST_QUEUE: Final = importlib.metadata.version("trio-websocket") == PINNED_VERSION
MESSAGE_QUEUE_SIZE: Final = 64
# The HTTP status of a handshake refused over Gate's (or its proxy's) connection limit.
TOO_MANY_CONNECTIONS: Final = 429
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
# The longest Retry-After honoured: a proxy's "come back tomorrow" is capped, not obeyed.
RETRY_AFTER_MAX: Final = 3600.0
BODY_EXCERPT: Final = 200


@dataclass(frozen=True)
class Refused:
    """The server answered the handshake with an HTTP status instead of switching protocols."""

    status: int
    retry_after: float | None = None  # seconds, when the answer said (capped)
    body: str = ""  # an excerpt, for the log

    def __str__(self) -> str:
        body = f": {self.body}" if self.body else ""
        wait = f" (Retry-After {self.retry_after:g} s)" if self.retry_after is not None else ""
        return f"handshake refused with HTTP {self.status}{wait}{body}"


def retry_after(headers: Iterable[tuple[bytes, bytes]], now: float) -> float | None:
    """``Retry-After`` (delta seconds or an HTTP date) as seconds from ``now``, capped; None
    when absent or unreadable. ``headers``: trio-websocket's ``((name, value), ...)``."""
    for name, value in headers:
        if name.lower() != b"retry-after":
            continue
        text = value.decode("latin-1").strip()
        if text.isdigit():
            seconds = float(text)
        else:
            try:
                seconds = email.utils.parsedate_to_datetime(text).timestamp() - now
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
        if not math.isfinite(seconds):
            return None
        return min(max(seconds, 0.0), RETRY_AFTER_MAX)
    return None


def refused(exc: ConnectionRejected, now: float) -> Refused:
    """What a rejected handshake said, as plain values."""
    body = (exc.body or b"")[:BODY_EXCERPT].decode("utf-8", "replace")
    return Refused(exc.status_code, retry_after(exc.headers, now), " ".join(body.split()))


class _ReaderGuard:
    """A nursery stand-in for trio-websocket's reader task: what it raises is kept, not thrown.

    Only ``start_soon`` is used by ``wrap_client_stream``. A reader that ends (raised
    or not) while the handshake still waits ends that wait: no answer is coming.
    """

    __slots__ = ("_nursery", "failure", "handshake")

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.failure: Exception | None = None
        self.handshake = trio.CancelScope()

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        self._nursery.start_soon(self._guarded, fn, *args)

    async def _guarded(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        try:
            await fn(*args)
        except Exception as exc:  # any failure of the reader ends this connection only
            self.failure = exc
        finally:
            self.handshake.cancel()  # a no-op once the handshake is done


class PutWithoutYield:
    """trio-websocket's end of its message queue, putting without a yield while there is room."""

    __slots__ = ("_inner",)

    def __init__(self, inner: trio.MemorySendChannel[str | bytes]) -> None:
        self._inner = inner

    async def send(self, message: str | bytes) -> None:
        try:
            self._inner.send_nowait(message)
        except trio.WouldBlock:
            await self._inner.send(message)  # full: wait for the session, as before

    async def aclose(self) -> None:
        await self._inner.aclose()


def fast_queue_note() -> dict[str, object]:
    """What the start-up log says of the message queue (pinned version, and whether used)."""
    installed = importlib.metadata.version("trio-websocket")
    return {"trio_websocket": installed, "pinned": PINNED_VERSION, "fast_queue": FAST_QUEUE}


def put_without_yield(ws: WebSocketConnection) -> None:
    """Let ``ws``'s reader queue messages without a schedule point each (see above)."""
    inner = getattr(ws, "_send_channel", None) if FAST_QUEUE else None
    if isinstance(inner, trio.MemorySendChannel):
        ws._send_channel = PutWithoutYield(inner)  # type: ignore[assignment]  # duck-typed


def quick_put_installed(ws: WebSocketConnection) -> bool:
    """Whether ``ws``'s reader queues without a yield (False off the pinned version)."""
    return isinstance(getattr(ws, "_send_channel", None), PutWithoutYield)


def queued_count(ws: WebSocketConnection) -> int:
    """How many messages trio-websocket holds for ``ws``, not yet taken (0 off the pinned
    version: the queue is not looked at)."""
    queue = _receive_queue(ws)
    return 0 if queue is None else queue.statistics().current_buffer_used


def queued_message(ws: WebSocketConnection) -> str | bytes | None:
    """The next message if trio-websocket already holds one, else None; no schedule point.

    Raises ``ConnectionClosed`` as ``get_message`` would, once the queue is closed.
    Always None off the pinned version: the caller then waits in ``get_message``.
    """
    queue = _receive_queue(ws)
    if queue is None:
        return None
    try:
        message: str | bytes = queue.receive_nowait()
    except trio.WouldBlock:
        return None
    except (trio.ClosedResourceError, trio.EndOfChannel):
        raise ConnectionClosed(ws.closed) from None
    return message


def _receive_queue(ws: WebSocketConnection) -> trio.MemoryReceiveChannel[str | bytes] | None:
    """trio-websocket's private queue of ``ws``, on the pinned version only."""
    queue = getattr(ws, "_recv_channel", None) if FAST_QUEUE else None
    return queue if isinstance(queue, trio.MemoryReceiveChannel) else None


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
    nursery: trio.Nursery,
    target: Target,
    limiter: trio.CapacityLimiter | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> WebSocketConnection | Refused | str:
    """The open connection, the server's refusal, or why it could not be opened (one line)."""
    try:
        if limiter is None:
            return await _handshake(nursery, target)
        async with limiter:  # a few handshakes at a time: no stampede
            return await _handshake(nursery, target)
    except ConnectionRejected as exc:
        return refused(exc, wall_clock())
    except CONNECT_ERRORS as exc:
        return connect_failure(target.url, exc)


def connect_failure(url: str, exc: BaseException) -> str:
    """Why a handshake failed, in one line; Gate's connection limit by its name."""
    if isinstance(exc, ConnectionRejected) and exc.status_code == TOO_MANY_CONNECTIONS:
        body = (exc.body or b"").decode("utf-8", "replace")[:BODY_EXCERPT]
        return (
            f"Gate refused the handshake at {url} with {exc.status_code} ({body.strip()}): "
            "this IP is at Gate's connection limit; something else on this address holds "
            "connections (another collector, a check), see gate.max_connections_per_ip"
        )
    # trio wraps a TLS refusal in BrokenResourceError: name the cause (e.g. the CA).
    cause = f" caused by {exc.__cause__!r}" if exc.__cause__ is not None else ""
    return f"connect to {url} failed: {exc!r}{cause}"


async def _handshake(nursery: trio.Nursery, target: Target) -> WebSocketConnection:
    url = urlsplit(target.url)
    secure = url.scheme == "wss"
    host = url.hostname or ""
    port = url.port or (443 if secure else 80)
    resource = url.path + (f"?{url.query}" if url.query else "")
    with trio.fail_after(target.timeout):
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
        stream = await trio.open_tcp_stream(host, port, local_address=target.local_address)
        try:
            if secure:
                stream = trio.SSLStream(stream, tls_context(target.ca_file), server_hostname=host)
                await stream.do_handshake()
            ws = await _wrap(nursery, stream, host, resource)
        except BaseException:
            await trio.aclose_forcefully(stream)  # not left to the garbage collector
            raise
        put_without_yield(ws)
        return ws


async def _wrap(
    nursery: trio.Nursery,
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream],
    host: str,
    resource: str,
) -> WebSocketConnection:
    """The WebSocket handshake, its reader task guarded: a refusal is raised here, in this task."""
    guard = _ReaderGuard(nursery)
    with guard.handshake:
        return await wrap_client_stream(
            guard,  # type: ignore[arg-type]  # duck-typed: only start_soon is called
            stream,
            host,
            resource,
            message_queue_size=MESSAGE_QUEUE_SIZE,
            receive_buffer_size=RECEIVE_BUFFER_SIZE,
        )
    # The reader ended before the handshake did: say why in terms the caller knows.
    failure = guard.failure
    if isinstance(failure, ConnectionRejected | ConnectionClosed | OSError):
        raise failure
    if failure is not None:
        raise HandshakeError(f"the handshake failed: {failure!r}") from None
    raise HandshakeError("the connection closed during the handshake")
