"""The endpoint under abuse: idle connections, a reconnecting slowloris, HEAD.

A liveness probe must be answered whatever other clients do: 200 idle
connections and 50 reconnecting slowloris clients hold every slot, and every
``/healthz`` probe still gets its 200. Refused and evicted connections are
counted on the server object, and logged at most once a minute.
"""

from __future__ import annotations

import httpx
import trio
from structlog.testing import capture_logs

from collector.telemetry.http.server import (
    MAX_CONNECTIONS,
    Response,
    Server,
    bound_port,
    open_listeners,
)

IDLE = 200
SLOWLORIS = 50
PROBES = 60


def handler(method: str, target: str) -> Response:
    """The endpoint's shape: plain answers that never wait."""
    if target == "/healthz":
        return Response(200, b"ok\n")
    return Response(404, b"not found\n")


async def start(nursery: trio.Nursery) -> tuple[Server, int]:
    listeners = await open_listeners("127.0.0.1:0")
    server = Server(handler)
    nursery.start_soon(server.serve, listeners)
    return server, bound_port(listeners)


async def idle(port: int, opened: list[trio.SocketStream]) -> None:
    """Connect and say nothing (kept open by the test until it ends)."""
    opened.append(await trio.open_tcp_stream("127.0.0.1", port))


async def slowloris(port: int) -> None:
    """A request head a byte at a time, never finished; connect again when cut."""
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
                while True:
                    await trio.sleep(0.3)
                    await stream.send_all(b"X")
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.sleep(0.01)


async def test_every_healthz_probe_is_answered_while_idle_and_slowloris_clients_hold_the_slots(
    nursery: trio.Nursery,
) -> None:
    server, port = await start(nursery)
    opened: list[trio.SocketStream] = []
    with capture_logs() as logs:
        async with trio.open_nursery() as clients:
            for _ in range(IDLE):
                await idle(port, opened)
            for _ in range(SLOWLORIS):
                clients.start_soon(slowloris, port)
            await trio.sleep(1.0)  # every slot is held by now
            statuses = []
            async with httpx.AsyncClient(timeout=10) as http:
                for _ in range(PROBES):
                    statuses.append(
                        (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code
                    )
                    await trio.sleep(0.05)
            clients.cancel_scope.cancel()
    for stream in opened:
        await stream.aclose()
    assert statuses == [200] * PROBES
    assert server.evicted > MAX_CONNECTIONS  # the slots were full and taken over
    lines = [e for e in logs if e["event"] == "http_connections_cut"]
    assert len(lines) == 1  # counted, not logged one by one
    assert lines[0]["evicted"] >= 1


async def test_head_gets_the_headers_of_get_and_no_body(nursery: trio.Nursery) -> None:
    _, port = await start(nursery)
    async with httpx.AsyncClient(timeout=10) as http:
        got = await http.get(f"http://127.0.0.1:{port}/healthz")
        head = await http.head(f"http://127.0.0.1:{port}/healthz")
        post = await http.post(f"http://127.0.0.1:{port}/healthz")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == got.headers["content-length"] == "3"
    assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")


async def test_a_request_not_whole_within_the_read_deadline_is_cut_and_counted(
    nursery: trio.Nursery,
) -> None:
    server, port = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\n")
        with trio.fail_after(10):
            assert await stream.receive_some(100) == b""  # closed unanswered
    assert (server.timed_out, server.evicted, server.refused) == (1, 0, 0)
