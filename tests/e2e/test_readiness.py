"""``/readyz``: "this shard serves what it can". Not ready while sessions are still
connecting (0 of N connected is not ready); ready once they settled, and it stays
ready (later losses and over-capacity are alerts, not readiness)."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from collector.devtools.simulator import Simulator
from collector.telemetry.http.endpoints import Observed
from tests.helpers import collector_config, get_when_up, running_collector
from tests.servers import InfluxServer, free_port


async def test_not_ready_while_no_session_can_connect(
    sim: Simulator, influxdb: InfluxServer, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    config = collector_config(tmp_path, sim, influxdb.url, "ready_ws_down")
    dead_ws = f"ws://127.0.0.1:{free_port()}/v4/ws/unified"
    config.write_text(config.read_text().replace(sim.ws_url, dead_ws))
    enabled = sum(1 for a in sim.state.accounts.values() if a.status == "enabled")
    async with running_collector(tmp_path, config) as collector:
        with trio.fail_after(60):  # discovery done (keys made over REST), sessions failing
            while (
                "still connecting"
                not in (answer := await get_when_up(http, f"{collector.url}/readyz")).text
            ):
                await trio.sleep(0.2)
        assert answer.status_code == 503
        assert answer.text.startswith(
            f"{enabled} of {enabled} sessions still connecting; 0/{enabled}"
        )
        metrics = (await http.get(f"{collector.url}/metrics")).text
        assert "gate_collector_ready 0.0" in metrics


class Shard:
    """A supervisor's answers, set by the test (the endpoint only reads them)."""

    def __init__(self) -> None:
        self.answer = (False, "first discovery of sub-accounts not done yet")

    def stats_fields(self) -> dict[str, float | int]:
        return {}

    def readiness(self) -> tuple[bool, str]:
        return self.answer

    def account_rows(self) -> list[dict[str, object]]:
        return []


def test_once_ready_it_stays_ready_and_says_why() -> None:
    shard = Shard()
    observed = Observed(shard, dict, dict, "0/1", "test")
    assert observed.readyz().status == 503
    shard.answer = (True, "3/3 sessions connected")
    assert observed.readyz().status == 200
    shard.answer = (False, "3 of 3 sessions still connecting; 0/3 sessions connected")
    answer = observed.readyz()
    assert (answer.status, answer.body) == (
        200,
        b"3 of 3 sessions still connecting; 0/3 sessions connected\n",
    )
