"""One account's failure stays with that account: the supervisor and the others go on.

The supervisor in-process against the simulator (real clock: its sessions sign
with time.time()), and against a real WebSocket server that refuses every handshake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from collector.app.failures import EXIT_INTERNAL, exit_code_for, internal_failure
from collector.config import Settings
from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient
from collector.keys import KeyStore, generate_master_key
from collector.points.lineproto import Bundle
from collector.session.session import AccountSession
from collector.supervisor.supervisor import Supervisor
from collector.telemetry.http.server import Response, bound_port, open_listeners, serve
from tests.servers import Refuser, start_refuser

CRASHING = 100002


async def start_supervisor(
    sim: Simulator,
    tmp_path: Path,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
    ws_url: str,
    **kwargs: Any,
) -> Supervisor:
    settings = Settings.model_validate(
        {
            "gate": {"rest_url": sim.rest_url, "ws_url": ws_url},
            "state": {"dir": str(tmp_path)},
        }
    )
    broker = BrokerClient(http, sim.state.broker, base_url=sim.rest_url)
    store = KeyStore.open(tmp_path, generate_master_key())
    send, receive = trio.open_memory_channel[Bundle](10_000)

    async def drain() -> None:
        async for _ in receive:
            pass

    supervisor = Supervisor(settings, broker, store, send, **kwargs)
    nursery.start_soon(drain)
    nursery.start_soon(supervisor.run)
    with trio.fail_after(30):
        await supervisor.ready.wait()
    return supervisor


async def test_every_session_refused_at_the_handshake_is_counted_and_nothing_ends(
    real_clock_sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    refuser = Refuser(429, b'{"label":"TOO_MANY_REQUESTS"}', [(b"Retry-After", b"1")])
    await start_refuser(nursery, refuser)
    supervisor = await start_supervisor(real_clock_sim, tmp_path, nursery, http, refuser.url)
    with trio.fail_after(30):  # three rounds of 9 sessions, each waiting its Retry-After
        while len(refuser.attempts) < 27:
            await trio.sleep(0.05)
    fields = supervisor.stats_fields()
    assert fields["handshake_refusals"] >= 27 and fields["handshake_refusals_auth"] == 0
    assert fields["session_crashes"] == 0 and fields["accounts_refused"] == 9
    states = {s.state for s in supervisor.account_states()}
    assert states == {"refused"}


class BuggySession(AccountSession):
    """A session with a bug for one account: its first run raises what nobody expects."""

    crashed: ClassVar[set[int]] = set()

    async def run(self) -> None:
        if self.account == CRASHING and self.account not in self.crashed:
            self.crashed.add(self.account)
            raise ExceptionGroup("bug", [RuntimeError("unexpected")])
        await super().run()


async def test_a_session_that_crashes_is_logged_once_counted_by_cause_and_restarted(
    real_clock_sim: Simulator, tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    sim = real_clock_sim
    with capture_logs() as logs:
        supervisor = await start_supervisor(
            sim, tmp_path, nursery, http, sim.ws_url, session_factory=BuggySession
        )
        with trio.fail_after(30):  # every account subscribed, the crashed one too
            while sum(sim.state.active.values()) < 18:
                await trio.sleep(0.05)
    fields = supervisor.stats_fields()
    assert fields["session_crashes"] == 1 and fields["session_crashes_RuntimeError"] == 1
    crashed = [e for e in logs if e["event"] == "session_crashed"]
    assert len(crashed) == 1
    assert crashed[0]["account"] == CRASHING and crashed[0]["cause"] == "RuntimeError"
    assert "exc_info" not in crashed[0]
    assert 0.5 <= crashed[0]["wait_seconds"] <= 1.0  # the first of the capped backoff
    assert supervisor.session_stats()[CRASHING].connected


async def one_cancelled() -> trio.Cancelled:
    """A real ``trio.Cancelled`` (trio has no public constructor): its own scope's."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            return exc
    raise AssertionError("the cancelled scope did not cancel")


async def test_a_failure_nothing_expected_is_one_line_and_exit_70() -> None:
    bug = BaseExceptionGroup("supervisor", [await one_cancelled(), RuntimeError("boom\nline 2")])
    assert exit_code_for(bug) is None  # not a known start-up failure
    code, line = internal_failure(bug)
    assert code == EXIT_INTERNAL == 70
    assert line.startswith("internal error: RuntimeError: boom (a bug") and "\n" not in line


async def test_a_request_whose_answer_fails_ends_only_that_connection(
    nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    def handler(_method: str, target: str) -> Response:
        if target == "/boom":
            raise ValueError("a bug rendering one page")
        return Response(200, b"ok\n")

    listeners = await open_listeners("127.0.0.1:0")
    nursery.start_soon(serve, handler, listeners)
    url = f"http://127.0.0.1:{bound_port(listeners)}"
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(httpx.HTTPError):
                await http.get(f"{url}/boom")
            assert (await http.get(f"{url}/healthz")).status_code == 200
    crashed = [e for e in logs if e["event"] == "http_request_crashed"]
    assert len(crashed) == 3 and "a bug rendering one page" in crashed[0]["error"]
