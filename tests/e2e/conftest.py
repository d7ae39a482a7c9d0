"""Fixtures of the end-to-end tests: the simulators the collector subprocess talks to."""

from __future__ import annotations

import pytest
import trio

from collector.devtools.simulator import Simulator
from tests.helpers import DAEMON_ACCOUNTS as ACCOUNTS
from tests.helpers import GAP_ACCOUNT


@pytest.fixture
async def gate(nursery: trio.Nursery) -> Simulator:
    sim = Simulator.create(accounts=ACCOUNTS, disabled_every=10)
    # Gate's u is the user id; a third of the accounts count instead (the seed's way).
    for i, account in enumerate(sim.state.accounts.values()):
        account.u_mode = "identity" if i % 3 == 2 else "counter"
    assert sim.state.accounts[GAP_ACCOUNT].u_mode == "counter"
    sim.state.push_interval = sim.state.change_interval = 0.25  # every account busy
    sim.state.rate_limit = 100_000
    await sim.start(nursery)
    return sim


@pytest.fixture
async def small_gate(nursery: trio.Nursery) -> Simulator:
    sim = Simulator.create(accounts=20, disabled_every=10)  # 18 enabled
    sim.state.rate_limit = 100_000
    await sim.start(nursery)
    return sim
