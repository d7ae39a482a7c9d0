"""REST snapshots for 1,000 quiet accounts: calls per minute, and the cold start (one run).

Both use the real scheduler and HTTP client against the simulator's
``/unified/accounts`` (signatures verified) in one process, with the default
``accounts.snapshot_interval`` and ``accounts.snapshot_rate``:

* steady state on trio's autojump clock (15 minutes pass at once): REST calls per
  minute and the busiest second;
* cold start on the real clock: every account asks at once (as each session does
  when its subscriptions become active), until every account has its points.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import httpx
import trio
import trio.testing

from collector.config import AccountsSettings
from collector.devtools.simulator import Simulator
from collector.gate.signing import ApiCredentials
from collector.gate.snapshot import SnapshotClient
from collector.points import schema
from collector.points.lineproto import Point
from collector.supervisor.snapshots import SnapshotScheduler
from tests.bench.harness import record

ACCOUNTS = 1000
STEADY_MINUTES = 15


async def _run(clock: Callable[[], float], minutes: float, cold: bool) -> dict[str, float]:
    defaults = AccountsSettings()
    sim = Simulator.create(accounts=ACCOUNTS, clock=clock)
    sim.state.rate_limit = 1_000_000
    served: list[float] = []
    seen: set[str] = set()
    done = trio.Event()
    async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=30) as http:
        await sim.start(nursery)
        creds = {}
        for account in sim.state.accounts.values():
            key = sim.state.create_key(account.gate_id, "gate-collector", [], [])
            creds[account.gate_id] = ApiCredentials(key.key, key.secret)
        send, receive = trio.open_memory_channel[list[Point]](10_000)
        scheduler = SnapshotScheduler(
            SnapshotClient(http, sim.rest_url, clock),
            creds.get,
            send,
            interval=defaults.snapshot_interval,
            rate=defaults.snapshot_rate,
            wall_clock=clock,
        )
        start = trio.current_time()

        async def collect() -> None:
            async for bundle in receive:
                served.append(trio.current_time() - start)
                seen.update(dict(p.tags)[schema.TAG_ACCOUNT] for p in bundle)
                if len(seen) == ACCOUNTS:
                    done.set()

        nursery.start_soon(collect)
        nursery.start_soon(scheduler.run)
        for account in sim.state.accounts.values():
            scheduler.add(account.gate_id, account.name)
            if cold:
                scheduler.request(account.gate_id, "subscribed")
        if cold:
            with trio.fail_after(600):
                await done.wait()
            result = {"all_seconds": trio.current_time() - start}
        else:
            await trio.sleep(minutes * 60)
            result = {}
        nursery.cancel_scope.cancel()
    per_minute = Counter(int(t // 60) for t in served)
    per_second = Counter(int(t) for t in served)
    steady = [per_minute[m] for m in range(5, int(minutes))] or [0]
    result.update(
        calls=len(served),
        per_minute=sum(steady) / len(steady),
        max_minute=max(steady),
        max_second=max(per_second.values(), default=0),
    )
    return result


def test_snapshot_load_and_cold_start() -> None:
    defaults = AccountsSettings()
    wall_start = time.time()

    def mock_wall() -> float:
        return wall_start + trio.current_time()

    steady = trio.run(
        _run, mock_wall, STEADY_MINUTES, False, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    cold = trio.run(_run, time.time, 0, True)
    expected = ACCOUNTS / defaults.snapshot_interval * 60
    record(
        "Snapshots",
        f"{ACCOUNTS:,} quiet accounts (no pushes at all), snapshot_interval "
        f"{defaults.snapshot_interval:g} s, snapshot_rate {defaults.snapshot_rate:g}/s; "
        "the scheduler and HTTP client against the simulator's /unified/accounts:\n\n"
        "| figure | value |\n|---|---|\n"
        f"| REST calls per minute, steady state (minutes 5-{STEADY_MINUTES}, autojump) | "
        f"{steady['per_minute']:.0f} (expected {expected:.0f}) |\n"
        f"| busiest minute / busiest second | {steady['max_minute']:.0f} / "
        f"{steady['max_second']:.0f} |\n"
        f"| cold start: every account asks at once, until all {ACCOUNTS:,} have points "
        f"(real clock) | {cold['all_seconds']:.1f} s (pace bound "
        f"{ACCOUNTS / defaults.snapshot_rate:.0f} s) |\n",
    )
