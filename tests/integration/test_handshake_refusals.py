"""A refused WebSocket handshake is a session outcome, never a crash.

Against a real trio-websocket server that answers every handshake with an HTTP
status (with and without a body): trio-websocket raises the rejection from its
reader task, which used to escape the caller's nursery in a race. Each case
connects 30 times: the race must be gone, not rarer. Then a session against it:
429/503 wait out ``Retry-After``, 401/403 show the account forbidden and retry
slowly, every refusal is counted. Loopback, port 0; the session tests run on the
autojump clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from collector.config import GateSettings
from collector.gate.signing import ApiCredentials
from collector.gate.subscription import ChannelState
from collector.points.lineproto import Bundle
from collector.session.session import AccountSession, SessionTiming
from collector.session.websocket import Refused, Target, open_websocket, retry_after
from tests.servers import Refuser, start_refuser

CONNECTS = 30
STATUSES = (401, 403, 429, 502, 503)
BODY = b'{"label": "TOO_MANY_REQUESTS",\n  "message": "too many connections"}\n'
EXCERPT = '{"label": "TOO_MANY_REQUESTS", "message": "too many connections"}'
BODIES = (None, BODY)


@pytest.mark.parametrize("body", BODIES, ids=["no-body", "body"])
@pytest.mark.parametrize("status", STATUSES)
async def test_every_refused_handshake_comes_back_as_a_refusal_30_times_in_30(
    status: int, body: bytes | None
) -> None:
    refuser = Refuser(status, body, [(b"Retry-After", b"7")] if status == 429 else [])
    answers: list[object] = []
    async with trio.open_nursery() as nursery:  # a rejection escaping would end up here
        await start_refuser(nursery, refuser)
        with trio.fail_after(30):
            for _ in range(CONNECTS):
                answers.append(await open_websocket(nursery, Target(refuser.url, timeout=10)))
        nursery.cancel_scope.cancel()
    # The body's excerpt on one line (whitespace collapsed: a log line stays one line).
    excerpt = "" if body is None else EXCERPT
    want = Refused(status, 7.0 if status == 429 else None, excerpt)
    assert answers == [want] * CONNECTS
    assert len(refuser.attempts) == CONNECTS


def test_retry_after_reads_seconds_and_dates_and_caps_them() -> None:
    now = 1_700_000_000.0
    assert retry_after(((b"retry-after", b"12"),), now) == 12.0
    assert retry_after(((b"Retry-After", b"Tue, 14 Nov 2023 22:13:40 GMT"),), now) == 20.0
    assert retry_after(((b"Retry-After", b"99999999"),), now) == 3600.0  # capped
    assert retry_after(((b"Retry-After", b"Tue, 14 Nov 2023 22:00:00 GMT"),), now) == 0.0
    assert retry_after(((b"Retry-After", b"soon"),), now) is None
    assert retry_after(((b"Content-Type", b"text/plain"),), now) is None


def session_on(url: str, wall_clock: Callable[[], float]) -> AccountSession:
    send, _receive = trio.open_memory_channel[Bundle](10)
    return AccountSession(
        100001,
        "sub-100001",
        ApiCredentials("k", "s"),
        GateSettings(ws_url=url),
        send,
        timing=SessionTiming(backoff_base=1, backoff_max=8),
        wall_clock=wall_clock,
        rng=random.Random(5),
    )


@pytest.mark.parametrize("body", BODIES, ids=["no-body", "body"])
@pytest.mark.parametrize("status", [429, 503])
async def test_a_busy_refusal_waits_out_retry_after_and_the_session_lives_on(
    status: int,
    body: bytes | None,
    nursery: trio.Nursery,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    refuser = await start_refuser(nursery, Refuser(status, body, [(b"Retry-After", b"30")]))
    session = session_on(refuser.url, wall_clock)
    with capture_logs() as logs, trio.move_on_after(300):
        await session.run()  # raises nothing: a refusal is an outcome
    gaps = [b - a for a, b in zip(refuser.attempts, refuser.attempts[1:], strict=False)]
    assert 9 <= len(refuser.attempts) <= 11  # one per 30 s (the backoff is at most 8 s)
    assert min(gaps) >= 30.0
    stats = session.stats
    assert stats.handshake_refusals == stats.reconnects == len(refuser.attempts)
    assert stats.handshake_refusals_auth == 0
    assert stats.subscription == ChannelState.REFUSED.value
    assert stats.subscription_reason.startswith(f"handshake refused with HTTP {status}")
    refused = [e for e in logs if e["event"] == "session_handshake_refused"]
    assert len(refused) == len(refuser.attempts) and refused[0]["status"] == status
    assert not [e for e in logs if "exc_info" in e or e["log_level"] == "error"]


@pytest.mark.parametrize("body", BODIES, ids=["no-body", "body"])
@pytest.mark.parametrize("status", [401, 403])
async def test_an_auth_refusal_shows_forbidden_is_loud_once_and_retried_slowly(
    status: int,
    body: bytes | None,
    nursery: trio.Nursery,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    refuser = await start_refuser(nursery, Refuser(status, body))
    session = session_on(refuser.url, wall_clock)
    with capture_logs() as logs, trio.move_on_after(600):
        await session.run()
    # 5, 10, 20, ... s (jittered within the upper half): far fewer than the 1-8 s of a drop.
    assert 5 <= len(refuser.attempts) <= 9
    stats = session.stats
    assert stats.handshake_refusals == stats.handshake_refusals_auth == len(refuser.attempts)
    assert stats.subscription == ChannelState.FORBIDDEN.value
    loud = [e for e in logs if e["event"] == "session_handshake_forbidden"]
    assert len(loud) == 1 and loud[0]["status"] == status and "hint" in loud[0]
    quiet = [e for e in logs if e["event"] == "session_handshake_refused"]
    assert len(quiet) == len(refuser.attempts) - 1


@pytest.mark.parametrize("status", [502])
async def test_a_gateway_error_is_retried_with_the_usual_backoff(
    status: int,
    nursery: trio.Nursery,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    refuser = await start_refuser(nursery, Refuser(status, b"<html>Bad Gateway</html>"))
    session = session_on(refuser.url, wall_clock)
    with trio.move_on_after(60):
        await session.run()
    # backoff 0.5-1, 1-2, 2-4, 4-8, then 4-8 s: about ten attempts a minute
    assert 8 <= len(refuser.attempts) <= 16
    assert session.stats.handshake_refusals == len(refuser.attempts)
    assert session.stats.subscription_reason == (
        "handshake refused with HTTP 502: <html>Bad Gateway</html>"
    )


@pytest.mark.parametrize(
    "answer", [b"", b"garbage, not HTTP\r\n\r\n"], ids=["closed-unanswered", "not-http"]
)
async def test_a_handshake_the_server_ends_without_an_answer_fails_at_once_30_times(
    answer: bytes,
) -> None:
    async def server(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)  # the upgrade request
        if answer:
            await stream.send_all(answer)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, server, 0)
        url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/v4/ws/unified"
        with trio.fail_after(10):  # not a 15 s connect timeout each
            answers = [await open_websocket(nursery, Target(url)) for _ in range(CONNECTS)]
        nursery.cancel_scope.cancel()
    assert all(isinstance(a, str) and "HandshakeError" in a for a in answers), answers[0]
