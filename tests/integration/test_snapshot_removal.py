"""An account that leaves while its snapshot waits for a free slot stops nothing.

Discovery may remove an account after the scheduler picked it and before its
snapshot starts (the scheduler waits for a free in-flight slot in between). The
snapshot is then skipped: the scheduler, and the supervisor around it, go on.
Real parts: the simulator's /unified/accounts, the autojump clock.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import trio
import trio.testing

from collector.devtools.simulator import Simulator
from collector.gate.signing import ApiCredentials
from collector.gate.snapshot import SnapshotClient
from collector.points.lineproto import Bundle
from collector.supervisor.snapshots import SnapshotScheduler


async def test_an_account_removed_while_its_snapshot_waits_is_skipped_and_the_rest_go_on(
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
    wall_clock: Callable[[], float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = Simulator.create(accounts=3, clock=wall_clock)
    sim.state.rate_limit = 100_000
    await sim.start(nursery)
    first, leaving, staying = sorted(sim.state.accounts)
    creds = {}
    for account in (first, leaving, staying):
        key = sim.state.create_key(account, "gate-collector", [], [])
        creds[account] = ApiCredentials(key.key, key.secret)
    # No room in the channel: the first snapshot holds the only in-flight slot until read.
    send, receive = trio.open_memory_channel[Bundle](0)
    scheduler = SnapshotScheduler(
        SnapshotClient(http, sim.rest_url, wall_clock),
        creds.get,
        send,
        interval=0,
        rate=100.0,
        wall_clock=wall_clock,
        concurrency=1,
    )
    ended: list[BaseException | None] = []

    async def run() -> None:
        try:
            await scheduler.run()
        except BaseException as exc:
            ended.append(exc)
            raise

    async with trio.open_nursery() as inner:
        inner.start_soon(run)
        for account in (first, leaving):
            scheduler.add(account, str(account))
            scheduler.request(account, "subscribed")
        await trio.sleep(1.0)  # the first waits to hand over its points; the second, for a slot
        assert sim.state.snapshots[first] == 1 and sim.state.snapshots[leaving] == 0
        scheduler.remove(leaving)  # discovery: the account was disabled
        with trio.fail_after(10):
            delivered = await receive.receive()  # the first hands over; its slot is free
        assert {dict(p.tags)["account"] for p in delivered} == {str(first)}
        scheduler.add(staying, str(staying))
        scheduler.request(staying, "subscribed")
        with trio.fail_after(10):
            bundle = await receive.receive()
        assert {dict(p.tags)["account"] for p in bundle} == {str(staying)}
        assert ended == []  # the scheduler still runs
        assert sim.state.snapshots[leaving] == 0  # nothing is read for an account that left
        assert scheduler.status(leaving) is None
        inner.cancel_scope.cancel()
