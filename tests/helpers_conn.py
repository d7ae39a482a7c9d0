"""A supervisor against the simulator on trio's autojump clock, with what it handed on.

Shared by the permission and connection-limit tests: the simulator and the
collector share a wall clock that moves with trio's, so Gate's windows, key
activation and rotations pass instantly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from collector.config import Settings
from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient, RetryPolicy
from collector.keys import KeyStore, generate_master_key
from collector.points import schema
from collector.points.lineproto import Bundle
from collector.session import SessionTiming
from collector.snapshots import SnapshotClient
from collector.supervisor import Supervisor
from tests.lines import as_points


@dataclass
class Running:
    """A supervisor in a test's nursery and the points it handed to the sink."""

    supervisor: Supervisor
    scope: trio.CancelScope
    store: KeyStore
    points: Counter[tuple[str, str]]  # (measurement, account) -> points
    # account -> trio times at which points of it arrived
    arrivals: dict[str, list[float]] = field(default_factory=dict)

    def key_of(self, account: int) -> str:
        stored = self.store.get(account)
        assert stored is not None
        return stored.key


async def start_supervisor(
    nursery: trio.Nursery,
    sim: Simulator,
    http: httpx.AsyncClient,
    state_dir: Path,
    wall_clock: Callable[[], float],
    *,
    gate: dict[str, Any] | None = None,
    accounts: dict[str, Any] | None = None,
    timing: SessionTiming | None = None,
) -> Running:
    """Start a supervisor (with REST snapshots) on ``sim``; returns once it is ready."""
    settings = Settings.model_validate(
        {
            "gate": {"rest_url": sim.rest_url, "ws_url": sim.ws_url, **(gate or {})},
            "accounts": accounts or {},
            "state": {"dir": str(state_dir)},
        }
    )
    broker = BrokerClient(
        http,
        sim.state.broker,
        base_url=sim.rest_url,
        wall_clock=wall_clock,
        retry=RetryPolicy(base_delay=0.1, max_delay=1.0),
    )
    store = KeyStore.open(state_dir, generate_master_key())
    store.io_in_thread = False  # autojump clock: no thread may run while it jumps
    send, receive = trio.open_memory_channel[Bundle](100_000)
    running = Running(
        Supervisor(
            settings,
            broker,
            store,
            send,
            timing=timing,
            wall_clock=wall_clock,
            snapshot_client=SnapshotClient(http, sim.rest_url, wall_clock),
        ),
        trio.CancelScope(),
        store,
        Counter(),
    )

    async def drain() -> None:
        async for batch in receive:
            now = trio.current_time()
            for point in as_points(batch):
                account = dict(point.tags)[schema.TAG_ACCOUNT]
                running.points[(point.measurement, account)] += 1
                running.arrivals.setdefault(account, []).append(now)

    async def serve() -> None:
        with running.scope:
            async with trio.open_nursery() as inner:
                inner.start_soon(drain)
                await running.supervisor.run()

    nursery.start_soon(serve)
    with trio.fail_after(60):
        await running.supervisor.ready.wait()
    return running


def enabled(sim: Simulator) -> set[int]:
    """The enabled sub-accounts of the simulator."""
    return {a.gate_id for a in sim.state.accounts.values() if a.status == "enabled"}
