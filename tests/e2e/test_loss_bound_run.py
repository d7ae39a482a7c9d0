"""kill -9 of the whole ``gate-collector run`` while InfluxDB is down or hanging.

The simulator (in the test's trio loop) pushes; the collector runs as operators
run it, a subprocess, and is killed with SIGKILL at a random moment, again and
again, on one state dir. InfluxDB is first a closed port ("down"), then a
loopback server that accepts and never answers ("hanging", owned by a fixture).
A last run against a real InfluxDB delivers what the killed ones spooled. What
must hold: every push made more than ``spool_after`` + one flush before a kill
is in InfluxDB (a hanging InfluxDB used to stretch that to ``influx.timeout``).
The figures are printed (``-s``) for the record.
"""

from __future__ import annotations

import functools
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from collector.app.commands import write_credentials
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.ws_push import Pusher
from collector.gate.protocol import ASSETS
from collector.keys import generate_master_key
from tests.helpers import wait_until
from tests.servers import HangingServer, InfluxServer, free_port, hanging_server

ACCOUNTS = 10
KILLS = int(os.environ.get("LOSS_KILLS", "6"))
# How long a run lives once subscribed: past BOUND, and over more than one spool cycle
# (spool_after + a flush), so the kills land at every phase of it.
LIFE = (1.0, 2.0)
SPOOL_AFTER = 0.5
FLUSH = 0.2
# A kill lands at any byte; the spool's fsync runs in a worker thread on a shared
# 2-core machine: the same slack as the sink-only kill test.
SLACK = 0.25
BOUND = SPOOL_AFTER + FLUSH + SLACK


@dataclass
class Pushes:
    """Every ``unified.assets`` push that went out: (run, account, time_ms).

    A push is the run's whose subscription it serves: the simulator may still push
    into a killed run's socket for a moment (the kernel takes the bytes), and such a
    push was never the next run's to keep.
    """

    run: int = 0  # the run being started: the test sets it before each start
    sent: list[tuple[int, int, int]] = field(default_factory=list)
    runs: dict[int, int] = field(default_factory=dict)  # id(pusher) -> its run
    pushers: list[Pusher] = field(default_factory=list)  # keeps the ids unique


@pytest.fixture
def pushes(monkeypatch: pytest.MonkeyPatch) -> Pushes:
    """Records the simulator's pushes as they go out (the truth the test compares to)."""
    record = Pushes()
    run, push = Pusher.run, Pusher.push

    async def subscribed(self: Pusher, scope: trio.CancelScope) -> None:
        record.runs[id(self)] = record.run
        record.pushers.append(self)
        await run(self, scope)

    async def recorded(self: Pusher, time_ms: int) -> bool:
        sent = await push(self, time_ms)
        if sent and self.channel == ASSETS:
            record.sent.append((record.runs[id(self)], self.account.gate_id, time_ms))
        return sent

    monkeypatch.setattr(Pusher, "run", subscribed)
    monkeypatch.setattr(Pusher, "push", recorded)
    return record


@pytest.fixture
async def gate(nursery: trio.Nursery) -> Simulator:
    """Ten busy accounts on the real clock (pushes are stamped with the wall time)."""
    sim = Simulator.create(accounts=ACCOUNTS)
    sim.state.push_interval = sim.state.change_interval = 0.05
    sim.state.rate_limit = 100_000
    await sim.start(nursery)
    return sim


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    """An InfluxDB that accepts writes and never answers."""
    with hanging_server() as server:
        yield server


@dataclass
class Runs:
    """``gate-collector run`` subprocesses; the fixture ends any still running."""

    tmp: Path
    sim: Simulator
    master_key: str = field(default_factory=generate_master_key)
    running: list[trio.Process] = field(default_factory=list)

    def configure(self, influx_url: str, database: str, timeout: float = 10.0) -> Path:
        config = self.tmp / "collector.toml"
        config.write_text(
            f'[gate]\nrest_url = "{self.sim.rest_url}"\nws_url = "{self.sim.ws_url}"\n'
            f'[state]\ndir = "{self.tmp}/state"\n'
            f'[influx]\nurl = "{influx_url}"\ndatabase = "{database}"\n'
            f"flush_interval = {FLUSH}\nflush_jitter = 0.0\nspool_after = {SPOOL_AFTER}\n"
            f"timeout = {timeout}\n"
        )
        return config

    async def start(self, config: Path) -> trio.Process:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
        env.update(
            CREDENTIALS_DIRECTORY=str(self.tmp / "creds"), GATE_COLLECTOR_MASTER_KEY=self.master_key
        )
        with (self.tmp / "collector.log").open("ab") as out:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "collector.app.cli", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.running.append(process)
        return process


@pytest.fixture
async def runs(tmp_path: Path, gate: Simulator) -> AsyncIterator[Runs]:
    """Collector runs on one state dir; each is killed at the end whatever happened."""
    write_credentials(tmp_path / "creds", gate.state.broker)
    collectors = Runs(tmp_path, gate)
    try:
        yield collectors
    finally:
        for process in collectors.running:
            if process.returncode is None:
                process.kill()
                with trio.move_on_after(10):
                    await process.wait()


def all_subscribed(gate: Simulator, before: int) -> bool:
    """Every account subscribed its two channels since ``before`` subscribes."""
    return gate.state.ws_events["subscribe"] >= before + 2 * ACCOUNTS


def spooled_files(state: Path) -> list[Path]:
    spool = state / "spool"
    return list(spool.glob("*.lp.gz")) if spool.exists() else []


async def kill_runs(
    runs: Runs, gate: Simulator, pushes: Pushes, url: str, rng: random.Random
) -> list[float]:
    """KILLS runs against ``url``, each SIGKILLed at a random moment; the kills' wall times."""
    # An hour of influx.timeout: neither the start (CREATE DATABASE) nor the bound may
    # wait for it, or the sessions would not open within the wait below.
    config = runs.configure(url, "bound", timeout=3600)
    kills = []
    for run in range(KILLS):
        pushes.run = run
        process = await runs.start(config)
        await wait_until(functools.partial(all_subscribed, gate, gate.state.ws_events["subscribe"]))
        await trio.sleep(rng.uniform(*LIFE))
        process.kill()
        kills.append(time.time())
        with trio.fail_after(10):
            await process.wait()
        assert process.returncode == -9
    return kills


def losses(pushes: Pushes, kills: list[float], written: set[tuple[int, int]]) -> list[float]:
    """How long before its run's kill each push that is not in InfluxDB was made."""
    ages = [
        kills[run] - time_ms / 1000
        for run, account, time_ms in pushes.sent
        if run < len(kills) and (account, time_ms) not in written
    ]
    return [age for age in ages if age >= 0]  # the rest went into a dead socket


@pytest.mark.timeout(300)
@pytest.mark.parametrize("outage", ["down", "hanging"])
async def test_kill_9_of_the_daemon_loses_nothing_older_than_spool_after_and_a_flush(
    outage: str,
    runs: Runs,
    gate: Simulator,
    pushes: Pushes,
    hanging: HangingServer,
    influxdb: InfluxServer,
) -> None:
    url = hanging.url if outage == "hanging" else f"http://127.0.0.1:{free_port()}"
    kills = await kill_runs(runs, gate, pushes, url, random.Random(f"bound-{outage}"))
    state = runs.tmp / "state"
    assert spooled_files(state), "the killed runs spooled nothing: the test proves nothing"

    pushes.run = KILLS
    database = f"bound_{outage}"  # created by the collector (after a write's 404 too)
    final = await runs.start(runs.configure(influxdb.url, database))
    await wait_until(lambda: not spooled_files(state), 60)
    final.terminate()
    with trio.fail_after(60):
        assert await final.wait() == 0

    result = influxdb.query(
        'SELECT "u" FROM "gate_unified_assets" GROUP BY "account"', db=database
    )["results"][0]  # type: ignore[index]
    written = {
        (int(series["tags"]["account"]), int(row[0]))
        for series in result.get("series", [])
        for row in series["values"]
    }
    ages = losses(pushes, kills, written)
    old = [age for age in ages if age > BOUND]
    print(
        f"\n{outage}: {KILLS} kills, {len(pushes.sent)} pushes, {len(ages)} lost "
        f"(oldest {max(ages, default=0):.3f} s before its kill), "
        f"{len(old)} older than spool_after + flush + slack = {BOUND} s"
    )
    assert old == []
    assert hanging.accepted > 0 or outage == "down"
