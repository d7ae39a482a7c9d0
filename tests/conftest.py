"""Shared fixtures: the Gate simulator, a BrokerClient on it, real InfluxDB, and the
reaper that ends every process a test left running, whatever its outcome."""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient, RetryPolicy
from collector.keys import KeyStore, generate_master_key
from tests.helpers import Running, Supervise, start_running
from tests.servers import InfluxServer, influx_server

WALL_START = time.time()


def child_pids() -> set[int]:
    """This process's live children (read from /proc: no dependency for it)."""
    me, children = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == me and fields[0] != b"Z":
            children.add(int(entry))
    return children


@pytest.fixture(autouse=True)
def reap_children() -> Iterator[None]:
    """Kill (with its process group) every child a test started and left running.

    Servers of wider-scoped fixtures start before this fixture and are spared; a
    function-scoped fixture's process was ended by its own teardown, which runs first.
    """
    before = child_pids()
    yield
    for pid in child_pids() - before:
        warnings.warn(f"a test left process {pid} running: killed", stacklevel=1)
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def trio_wall_clock() -> float:
    """Wall time that moves with trio's clock, so autojump tests see resets pass."""
    return WALL_START + trio.current_time()


@pytest.fixture
def wall_clock() -> Callable[[], float]:
    """The clock shared by the simulator and the client in a test."""
    return trio_wall_clock


@pytest.fixture
async def sim(nursery: trio.Nursery, wall_clock: Callable[[], float]) -> Simulator:
    """A running simulator with 12 sub-accounts, every 4th disabled."""
    simulator = Simulator.create(accounts=12, disabled_every=4, clock=wall_clock)
    await simulator.start(nursery)
    return simulator


@pytest.fixture
async def real_clock_sim(nursery: trio.Nursery) -> Simulator:
    """Like ``sim`` but on the real clock (time.time()): for a supervisor, whose
    sessions sign with time.time()."""
    simulator = Simulator.create(accounts=12, disabled_every=4)
    await simulator.start(nursery)
    return simulator


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """One HTTP client for the test."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def broker(
    sim: Simulator, http: httpx.AsyncClient, wall_clock: Callable[[], float]
) -> BrokerClient:
    """A BrokerClient with the simulator's broker key."""
    return BrokerClient(
        http,
        sim.state.broker,
        base_url=sim.rest_url,
        wall_clock=wall_clock,
        retry=RetryPolicy(base_delay=0.1, max_delay=1.0),
    )


@pytest.fixture
def supervise(
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
    tmp_path: Path,
    wall_clock: Callable[[], float],
) -> Supervise:
    """``await supervise(sim, gate=..., accounts=...)``: ``start_running`` on ``sim`` with
    this test's nursery, HTTP client, state directory and clock."""

    async def start(sim: Simulator, **sections: Any) -> Running:
        return await start_running(nursery, sim, http, tmp_path, wall_clock, **sections)

    return start


@pytest.fixture
def master_key() -> str:
    """A fresh master key."""
    return generate_master_key()


@pytest.fixture
def store(tmp_path: Path, master_key: str) -> KeyStore:
    """An empty key store in a temp dir."""
    return KeyStore.open(tmp_path / "state", master_key)


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One real InfluxDB 1.x for the session."""
    with influx_server(tmp_path_factory.mktemp("influxdb")) as server:
        yield server
