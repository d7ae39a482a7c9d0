"""A small, bounded HTTP/1.1 server on trio and h11 for the collector's endpoint.

One request per connection (``Connection: close``): scrapers and probes open a
connection each time, and a server that keeps nothing open cannot be held open.
Bounded so that no client can hurt the data path, and so that abuse cannot starve
a liveness probe:

* a client that sends its whole request at once (a probe, a scraper) is answered
  on the quick path, without a slot: its answer never waits on I/O, so
  ``/healthz`` is answered while every slot is held;
* a client still sending after ``QUICK_READ`` needs one of ``MAX_CONNECTIONS``
  slots; when they are all taken, the connection that has waited longest for its
  request is closed to make room (an idle or slowloris client loses, never a
  newcomer);
* ``READ_TIMEOUT`` for the whole request head and ``SEND_TIMEOUT`` for the answer,
  ``MAX_REQUEST`` bytes of head, no request bodies; GET and HEAD only;
* refused and evicted connections are counted (:class:`Server`), and logged at
  most once per ``REFUSAL_LOG_INTERVAL``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import h11
import trio

from collector.base.logging import get_logger
from collector.config.settings import parse_listen

log = get_logger(__name__)

MAX_CONNECTIONS: Final = 16
# A request that is not whole by then needs a slot; probes send theirs at once.
QUICK_READ: Final = 0.2
# Connections answered on the quick path at once (each is done within SEND_TIMEOUT).
MAX_QUICK: Final = 256
READ_TIMEOUT: Final = 2.0
SEND_TIMEOUT: Final = 2.0
MAX_REQUEST: Final = 8192
READ_SIZE: Final = 4096
REFUSAL_LOG_INTERVAL: Final = 60.0


@dataclass
class Response:
    """A handler's answer."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


# Handlers are plain functions: they read counters and must never wait on I/O.
Handler = Callable[[str, str], Response]


async def open_listeners(listen: str) -> list[trio.SocketListener]:
    """Bind ``host:port`` (OSError when taken): done before serving, so it fails plainly."""
    host, port = parse_listen(listen)
    return await trio.open_tcp_listeners(port, host=host)


def bound_port(listeners: list[trio.SocketListener]) -> int:
    """The port the listeners got (the one asked for, or the kernel's pick for 0)."""
    return int(listeners[0].socket.getsockname()[1])


class _Slot:
    """A connection holding a slot while it reads its request."""

    def __init__(self, deadline: float) -> None:
        self.scope = trio.CancelScope(deadline=deadline)
        self.owned = True  # False once its slot went to a newcomer


class Server:
    """Serves a handler on listeners; counts the connections it refused or closed early."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._quick = trio.CapacityLimiter(MAX_QUICK)
        self._slots_held = 0
        # Slot holders still reading their request, oldest first: eviction candidates.
        self._waiting: OrderedDict[int, _Slot] = OrderedDict()
        self.refused = 0  # no slot and nothing to evict: closed unanswered
        self.evicted = 0  # closed before their request was whole, to make room
        self.timed_out = 0  # request not whole within READ_TIMEOUT
        self._reported = (0, 0, 0)
        self._next_report = 0.0

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        """Serve until cancelled."""
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            await self._serve_one(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        except Exception as exc:  # a failure answering one client never ends the endpoint
            log.error("http_request_crashed", error=repr(exc)[:300])
        finally:
            await stream.aclose()
            self._report()

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
        deadline = trio.current_time() + READ_TIMEOUT
        try:
            request = await self._read(conn, stream, deadline)
        except h11.RemoteProtocolError as exc:
            # Too large or not HTTP: say so in one line (h11 knows the status), then close.
            await _send(conn, stream, Response(exc.error_status_hint, f"{exc}\n".encode()))
            return
        if request is not None:
            await _send(conn, stream, self._answer(request), head=request.method == b"HEAD")

    async def _read(
        self, conn: h11.Connection, stream: trio.SocketStream, deadline: float
    ) -> h11.Request | None:
        """The request: on the quick path if it is whole at once, else holding a slot."""
        if self._quick.available_tokens:  # none in a storm of connections: each needs a slot
            self._quick.acquire_nowait()
            try:
                with trio.move_on_after(QUICK_READ):
                    return await _read_request(conn, stream)
            finally:
                self._quick.release()
        return await self._slow_read(conn, stream, deadline)

    async def _slow_read(
        self, conn: h11.Connection, stream: trio.SocketStream, deadline: float
    ) -> h11.Request | None:
        if not self._take_slot():
            self.refused += 1
            return None
        slot = _Slot(deadline)
        self._waiting[id(slot)] = slot
        try:
            with slot.scope:
                return await _read_request(conn, stream)
            if slot.owned:
                self.timed_out += 1
            return None
        finally:
            self._waiting.pop(id(slot), None)
            if slot.owned:
                self._slots_held -= 1

    def _take_slot(self) -> bool:
        """A slot, taken from the longest-waiting request's connection if none is free."""
        if self._slots_held < MAX_CONNECTIONS:
            self._slots_held += 1
            return True
        if not self._waiting:
            return False  # every slot holder is being answered: short-lived, but taken
        _, oldest = self._waiting.popitem(last=False)
        oldest.owned = False  # its slot is the newcomer's now
        oldest.scope.cancel()
        self.evicted += 1
        return True

    def _answer(self, request: h11.Request) -> Response:
        if request.method not in (b"GET", b"HEAD"):
            return Response(405, b"only GET and HEAD\n", headers={"Allow": "GET, HEAD"})
        return self._handler("GET", request.target.decode("ascii", "replace"))

    def _report(self) -> None:
        """One line per REFUSAL_LOG_INTERVAL at most, when anything was refused or cut."""
        counts = (self.refused, self.evicted, self.timed_out)
        now = trio.current_time()
        if counts == self._reported or now < self._next_report:
            return
        before = self._reported
        self._reported, self._next_report = counts, now + REFUSAL_LOG_INTERVAL
        log.warning(
            "http_connections_cut",
            refused=counts[0] - before[0],
            evicted=counts[1] - before[1],
            timed_out=counts[2] - before[2],
            max_connections=MAX_CONNECTIONS,
            hint="clients that do not send a whole request at once (idle, slowloris)",
        )


async def serve(handler: Handler, listeners: list[trio.SocketListener]) -> None:
    """Serve ``handler(method, target)`` on bound ``listeners`` until cancelled."""
    await Server(handler).serve(listeners)


async def _send(
    conn: h11.Connection, stream: trio.SocketStream, response: Response, *, head: bool = False
) -> None:
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        ("Connection", "close"),
        *response.headers.items(),
    ]
    out = conn.send(h11.Response(status_code=response.status, headers=headers))
    if not head:  # HEAD: the same headers, no body
        out += conn.send(h11.Data(data=response.body))
    out += conn.send(h11.EndOfMessage())
    with trio.move_on_after(SEND_TIMEOUT):
        await stream.send_all(out)


async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> h11.Request | None:
    """The request head; None when the client closes first."""
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
