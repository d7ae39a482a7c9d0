"""SnapshotScheduler: when each account is read by REST, at what pace, and what a
failure leaves.

Rules kept here: trio's autojump clock (hours of intervals pass instantly); a fake
client records each read with its trio time and answers from a script per account;
the scheduler's rng is seeded, so a test can draw the same offsets and backoffs.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import trio
from structlog.testing import capture_logs

from collector.base.backoff import backoff_delay
from collector.gate.errors import AuthError, GateError, ServerError
from collector.gate.signing import ApiCredentials
from collector.gate.snapshot import NotUnifiedError, SnapshotClient
from collector.gate.unified import UnifiedAccount
from collector.points.lineproto import Bundle, Point
from collector.supervisor.snapshots import (
    MIN_ACCOUNT_SPACING,
    RETRY,
    SLOW_RETRY,
    STATE_FAILING,
    STATE_FORBIDDEN,
    STATE_NOT_UNIFIED,
    STATE_OK,
    SnapshotScheduler,
)

INTERVAL = 60.0
SEED = 3
Answer = dict[str, Any] | Exception


READ_EPOCH = 1_700_000_000.0  # Gate's clock at trio time 0


@dataclass
class FakeClient:
    """Answers ``read`` from ``script[account]`` (then a good body); records each read."""

    script: dict[int, list[Answer]] = field(default_factory=dict)
    took: float = 0.0  # seconds each read takes
    reads: list[tuple[float, int]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    async def read(self, creds: ApiCredentials) -> tuple[UnifiedAccount, float]:
        """The next scripted answer for the account the key belongs to, and when (Gate's
        clock: trio's, from a fixed Unix start)."""
        account = int(creds.key.removeprefix("key"))
        self.reads.append((trio.current_time(), account))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await trio.sleep(self.took)
        finally:
            self.in_flight -= 1
        queue = self.script.get(account, [])
        answer = queue.pop(0) if queue else {"user_id": account, "total": "100"}
        if isinstance(answer, Exception):
            raise answer
        return UnifiedAccount.parse(answer), READ_EPOCH + trio.current_time()

    def times(self, account: int) -> list[float]:
        """When ``account`` was read."""
        return [t for t, a in self.reads if a == account]


@dataclass
class Rig:
    """A running scheduler on a fake client, and what it sent and observed."""

    scheduler: SnapshotScheduler
    client: FakeClient
    sent: list[Bundle]
    observed: list[list[Point]]
    keyless: set[int]


def creds_of(keyless: set[int]) -> Any:
    def creds(account: int) -> ApiCredentials | None:
        return None if account in keyless else ApiCredentials(f"key{account}", "secret")

    return creds


async def start(
    nursery: trio.Nursery, *, interval: float = INTERVAL, rate: float = 10.0, concurrency: int = 16
) -> Rig:
    """A scheduler running in ``nursery`` with its sink drained into ``sent``."""
    client = FakeClient()
    send, receive = trio.open_memory_channel[Bundle](100)
    sent: list[Bundle] = []
    observed: list[list[Point]] = []
    keyless: set[int] = set()

    def observe(points: Iterable[Point]) -> None:
        observed.append(list(points))

    scheduler = SnapshotScheduler(
        cast(SnapshotClient, client),
        creds_of(keyless),
        send,
        interval=interval,
        rate=rate,
        wall_clock=lambda: 1_700_000_000.0 + trio.current_time(),
        rng=random.Random(SEED),
        concurrency=concurrency,
        observe=observe,
    )

    async def drain() -> None:
        async for bundle in receive:
            sent.append(bundle)

    nursery.start_soon(drain)
    nursery.start_soon(scheduler.run)
    return Rig(scheduler, client, sent, observed, keyless)


@pytest.fixture
async def rig(nursery: trio.Nursery) -> AsyncIterator[Rig]:
    """The default scheduler: interval 60 s, 10 reads/s."""
    yield await start(nursery)


async def test_each_account_is_read_once_per_interval_from_a_random_offset(
    rig: Rig, autojump_clock: Any
) -> None:
    rng = random.Random(SEED)
    for account in (1, 2, 3):
        rig.scheduler.add(account, f"acct{account}")
    offsets = [rng.uniform(0, INTERVAL) for _ in range(3)]
    await trio.sleep(5 * INTERVAL + 1)
    for account, offset in zip((1, 2, 3), offsets, strict=True):
        expected = [offset + n * INTERVAL for n in range(5)]
        assert rig.client.times(account) == pytest.approx(expected, abs=0.3)
    assert rig.scheduler.totals.taken == 15


async def test_a_snapshot_goes_to_the_sink_and_to_the_totals(rig: Rig, autojump_clock: Any) -> None:
    rig.scheduler.add(1, "acct1")
    rig.scheduler.request(1, "subscribed")
    await trio.sleep(1)
    assert len(rig.sent) == 1 and rig.observed == [list(rig.sent[0])]
    point = rig.sent[0][0]
    assert isinstance(point, Point) and point.fields == {"total": "100"}
    status = rig.scheduler.status(1)
    assert status is not None and (status.state, status.taken) == (STATE_OK, 1)
    assert status.last_at == pytest.approx(0.0)


async def test_a_request_is_read_at_once_and_requests_coalesce_while_waiting(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.scheduler.add(1, "acct1")
    await trio.sleep(100)
    before = len(rig.client.times(1))
    for reason in ("gap", "gap", "reconnect"):
        rig.scheduler.request(1, reason)
    await trio.sleep(0.5)
    assert rig.client.times(1)[before:] == [pytest.approx(100.0)]


async def test_an_urgent_read_moves_the_periodic_one_a_whole_interval_on(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.scheduler.add(1, "acct1")
    first = random.Random(SEED).uniform(0, INTERVAL)
    await trio.sleep(first + 10)
    rig.scheduler.request(1, "gap")
    await trio.sleep(INTERVAL + 1)
    times = rig.client.times(1)
    assert times == pytest.approx([first, first + 10, first + 10 + INTERVAL])


async def test_reads_of_one_account_are_spaced_by_its_minimum(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.scheduler.add(1, "acct1")
    rig.scheduler.request(1, "subscribed")
    await trio.sleep(0.2)
    rig.scheduler.request(1, "gap")
    await trio.sleep(5)
    assert rig.client.times(1)[:2] == pytest.approx([0.0, MIN_ACCOUNT_SPACING])


async def test_the_instance_never_reads_faster_than_its_rate(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    rig = await start(nursery, rate=2.0)
    for account in range(1, 7):
        rig.scheduler.add(account, f"acct{account}")
        rig.scheduler.request(account, "subscribed")
    await trio.sleep(10)
    times = sorted(t for t, _ in rig.client.reads)
    assert times == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])


async def test_reads_in_flight_are_bounded_and_each_admitted_read_frees_its_place(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    rig = await start(nursery, rate=100.0, concurrency=2)
    rig.client.took = 5.0
    for account in range(1, 6):
        rig.scheduler.add(account, f"acct{account}")
        rig.scheduler.request(account, "subscribed")
    await trio.sleep(30)
    assert rig.client.most_in_flight == 2
    assert sorted(a for _, a in rig.client.reads) == [1, 2, 3, 4, 5]


async def test_a_failed_read_is_retried_with_backoff_and_a_success_resets_it(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.client.script[1] = [ServerError(502, "BAD_GATEWAY", "down")] * 3
    rng = random.Random(SEED)
    rig.scheduler.add(1, "acct1")
    rng.uniform(0, INTERVAL)  # the periodic offset is drawn first
    rig.scheduler.request(1, "subscribed")
    with capture_logs() as logs:
        await trio.sleep(40)
    waits = [backoff_delay(n, *RETRY, rng) for n in (1, 2, 3)]
    expected = [0.0, waits[0], waits[0] + waits[1], sum(waits)]
    assert rig.client.times(1)[:4] == pytest.approx(expected)
    status = rig.scheduler.status(1)
    assert status is not None
    assert (status.state, status.failures, status.failed, status.taken) == (STATE_OK, 0, 3, 1)
    assert [e["event"] for e in logs if e["event"].startswith("snapshot_")] == [
        "snapshot_failing",
        "snapshot_recovered",
    ]
    assert rig.scheduler.totals.failed == 3


async def test_an_account_not_in_unified_mode_is_asked_again_only_slowly(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.client.script[1] = [NotUnifiedError("mode classic")]
    rig.scheduler.add(1, "acct1")
    rig.scheduler.request(1, "subscribed")
    await trio.sleep(1)
    status = rig.scheduler.status(1)
    assert status is not None and status.state == STATE_NOT_UNIFIED
    await trio.sleep(SLOW_RETRY)
    assert rig.client.times(1) == pytest.approx([0.0, SLOW_RETRY])
    status = rig.scheduler.status(1)
    assert status is not None and status.state == STATE_OK and status.failed == 1


@pytest.mark.parametrize("label", ["FORBIDDEN", "IP_FORBIDDEN"])
async def test_a_key_without_permission_is_asked_again_only_slowly(
    rig: Rig, autojump_clock: Any, label: str
) -> None:
    rig.client.script[1] = [AuthError(403, label, "no")]
    rig.scheduler.add(1, "acct1")
    rig.scheduler.request(1, "subscribed")
    await trio.sleep(1)
    status = rig.scheduler.status(1)
    assert status is not None and status.state == STATE_FORBIDDEN
    await trio.sleep(SLOW_RETRY)
    assert rig.client.times(1) == pytest.approx([0.0, SLOW_RETRY])


async def test_another_refusal_is_a_failure_retried_with_backoff(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.client.script[1] = [AuthError(401, "INVALID_KEY", "no"), GateError("reset")]
    rig.scheduler.add(1, "acct1")
    rig.scheduler.request(1, "subscribed")
    await trio.sleep(0.5)
    status = rig.scheduler.status(1)
    assert status is not None and (status.state, status.failures) == (STATE_FAILING, 1)
    await trio.sleep(RETRY[0] + 0.1)
    assert (status.state, status.failures) == (STATE_FAILING, 2)


async def test_an_account_without_a_key_is_asked_again_after_the_longest_retry(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.keyless.add(1)
    rig.scheduler.add(1, "acct1")
    rig.scheduler.request(1, "subscribed")
    await trio.sleep(RETRY[1] - 1)
    status = rig.scheduler.status(1)
    assert status is not None and (status.state, status.reason) == (STATE_FAILING, "no stored key")
    assert status.failed == 1
    rig.keyless.clear()
    await trio.sleep(2)
    assert rig.client.times(1) == pytest.approx([RETRY[1]])


async def test_a_body_of_another_account_is_refused(rig: Rig, autojump_clock: Any) -> None:
    rig.client.script[1] = [{"user_id": 2, "total": "5"}]
    rig.scheduler.add(1, "acct1")
    rig.scheduler.request(1, "subscribed")
    await trio.sleep(0.5)
    status = rig.scheduler.status(1)
    assert status is not None and status.state == STATE_FAILING and status.taken == 0
    assert rig.sent == []


async def test_a_removed_account_is_read_no_more(rig: Rig, autojump_clock: Any) -> None:
    rig.scheduler.add(1, "acct1")
    rig.scheduler.add(2, "acct2")
    rig.scheduler.remove(1)
    rig.scheduler.request(1, "gap")  # a session's late request for it is ignored
    await trio.sleep(3 * INTERVAL)
    assert rig.client.times(1) == [] and len(rig.client.times(2)) == 3
    assert rig.scheduler.status(1) is None


async def test_with_no_interval_only_requested_reads_are_made(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    rig = await start(nursery, interval=0.0)
    rig.scheduler.add(1, "acct1")
    await trio.sleep(600)
    rig.scheduler.request(1, "gap")
    await trio.sleep(600)
    assert rig.client.times(1) == pytest.approx([600.0])


async def test_a_rotations_bridge_that_raises_is_contained_and_counted(
    rig: Rig, autojump_clock: Any
) -> None:
    rig.client.script[1] = [ValueError("a bug in the body's reader")]
    rig.scheduler.add(1, "acct1")
    with capture_logs() as logs:
        assert await rig.scheduler.bridge(1) is False
    status = rig.scheduler.status(1)
    assert status is not None
    assert (status.state, status.failures, rig.scheduler.totals.crashes) == (STATE_FAILING, 1, 1)
    crashed = [e for e in logs if e["event"] == "snapshot_crashed"]
    assert crashed == [
        {
            "event": "snapshot_crashed",
            "account": 1,
            "error": 'ValueError("a bug in the body\'s reader")',
            "log_level": "error",
        }
    ]
    assert await rig.scheduler.bridge(1) is True  # the next answer is good
