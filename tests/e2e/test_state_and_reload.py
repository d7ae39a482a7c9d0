"""One daemon per state dir, and a SIGHUP that applies what it says it applies."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import trio

from collector.app.commands import write_credentials
from collector.app.statelock import StateDirBusy, hold_state_dir
from collector.config import InfluxSettings
from collector.gate.signing import ApiCredentials
from collector.keys import generate_master_key
from collector.points.lineproto import Point
from collector.sink.writer import Sink
from tests.helpers import wait_until
from tests.servers import InfluxServer, free_port


def test_a_second_holder_of_a_state_dir_is_refused_naming_the_first(tmp_path: Path) -> None:
    with hold_state_dir(tmp_path), pytest.raises(StateDirBusy) as refused, hold_state_dir(tmp_path):
        pass
    assert str(refused.value) == (
        f"state.dir {tmp_path} is in use by another gate-collector (pid {os.getpid()}); "
        "stop it, or give this one its own state.dir"
    )
    with hold_state_dir(tmp_path):  # released with the first holder
        pass


def test_a_second_daemon_on_one_state_dir_exits_2_naming_the_pid(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        '[gate]\nrest_url = "http://127.0.0.1:1/api/v4"\nws_url = "ws://127.0.0.1:1/ws"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        f'[influx]\nurl = "http://127.0.0.1:{free_port()}"\n'
    )
    write_credentials(tmp_path / "creds", ApiCredentials("k" * 32, "s" * 64))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
    env.update(
        CREDENTIALS_DIRECTORY=str(tmp_path / "creds"),
        GATE_COLLECTOR_MASTER_KEY=generate_master_key(),
    )
    with hold_state_dir(tmp_path / "state"):  # the first daemon
        result = subprocess.run(
            [sys.executable, "-m", "collector.app.cli", "run", "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"gate-collector: state.dir {tmp_path / 'state'} is in use by another gate-collector "
        f"(pid {os.getpid()}); stop it, or give this one its own state.dir"
    ]


async def test_a_reload_applies_batch_size_and_flush_interval_to_the_running_sink(
    influxdb: InfluxServer, http: httpx.AsyncClient
) -> None:
    database = f"reload_{uuid.uuid4().hex[:10]}"
    influxdb.create_database(database)
    # Neither a full batch nor a tick would ever send 10 points with these.
    slow = InfluxSettings(url=influxdb.url, database=database, batch_size=1000, flush_interval=3600)
    sink = Sink(http, slow, None)
    send, receive = trio.open_memory_channel[list[Point]](100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.run, receive)
        await sink.retarget(slow.model_copy(update={"batch_size": 10}))
        for i in range(10):
            await send.send([Point("reload", (("k", "v"),), {"i": i}, 1_700_000_000_000 + i)])
        await wait_until(lambda: sink.stats.points_written == 10, 30)  # a full batch of 10
        await sink.retarget(slow.model_copy(update={"flush_interval": 0.05}))
        await send.send([Point("reload", (("k", "v"),), {"i": 10}, 1_700_000_000_010)])
        await wait_until(lambda: sink.stats.points_written == 11, 30)  # the new tick
        await send.aclose()


async def _drain(receive: trio.MemoryReceiveChannel[list[Point]]) -> None:
    async for _ in receive:
        pass
