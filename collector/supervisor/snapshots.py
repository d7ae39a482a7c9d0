"""REST snapshots: the whole state of an account, because Gate pushes only on change.

``GET /api/v4/unified/accounts`` signed with the sub-account's own key
(:class:`~collector.gate.snapshot.SnapshotClient`, over the REST transport) is taken

* when a session's subscriptions become active and after every sequence gap
  (the session asks through :meth:`SnapshotScheduler.request`; requests for one
  account coalesce while they wait);
* every ``accounts.snapshot_interval`` seconds for every account, each account at
  its own random offset in the interval, so a thousand accounts make a steady
  trickle, never a burst;
* never faster than ``accounts.snapshot_rate`` requests/s for the instance, and
  never twice within ``MIN_ACCOUNT_SPACING`` for one account (Gate's limits are
  per user id).

The body becomes points through :mod:`collector.points.snapshot` and goes to the
sink like a push, stamped with the time it was read on Gate's clock (the
response's ``Date`` when our corrected clock is off it), but after every push of
the account already written (:meth:`~collector.points.book.AccountBook.snapshot_time`):
a snapshot never overwrites a push at the same timestamp. ``refresh_time`` is
only a field (Gate does not define it). The body's ``mode`` goes into the shared
:class:`~collector.points.book.AccountBook` (what a 0 means, which rate is the
account's effective one), and its rates are the REST side of the evidence for
``gate.ws_rate_unit = "auto"``. A snapshot that fails is counted, logged once per change of
the account's snapshot state, and retried with backoff; it never stops a session.
A snapshot that *crashes* (anything it raises) is contained the same way, logged
as one line and counted (``snapshot_crashes``); an account removed while its
snapshot waited for a slot is skipped. An account that is not in unified mode,
or whose key lacks the permission, is a state of its own, retried slowly.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

import trio

from collector.base.backoff import backoff_delay
from collector.base.logging import get_logger
from collector.gate.errors import CONFIG_REFUSALS, GateAPIError, GateError
from collector.gate.signing import ApiCredentials
from collector.gate.snapshot import NotUnifiedError, SnapshotClient
from collector.points.book import AccountBook
from collector.points.lineproto import Bundle, Point
from collector.points.snapshot import SnapshotPoints, snapshot_points

log = get_logger(__name__)

MIN_ACCOUNT_SPACING: Final = 1.0
RETRY: Final = (2.0, 120.0)  # backoff after a failed snapshot: base, cap
SLOW_RETRY: Final = 300.0  # not unified / no permission: a person has to act first
CONCURRENCY: Final = 16

STATE_NONE: Final = "none"
STATE_OK: Final = "ok"
STATE_FAILING: Final = "failing"
STATE_NOT_UNIFIED: Final = "not_unified"
STATE_FORBIDDEN: Final = "forbidden"


@dataclass
class SnapshotStatus:
    """One account's snapshots: counts, and the state the last one left."""

    label: str
    taken: int = 0
    failed: int = 0
    failures: int = 0  # consecutive
    state: str = STATE_NONE
    reason: str = ""
    last_at: float | None = None  # trio time of the last successful snapshot
    started_at: float = float("-inf")
    in_flight: bool = False


@dataclass
class SnapshotTotals:
    """Instance-wide counters for ``collector_stats``."""

    taken: int = 0
    failed: int = 0
    invalid_fields: int = 0
    crashes: int = 0  # snapshots that raised: contained, logged, retried


@dataclass
class _Queue:
    """Due times of the periodic and retry snapshots (a heap, lazily cleaned)."""

    heap: list[tuple[float, int, int]] = field(default_factory=list)
    due: dict[int, float] = field(default_factory=dict)
    seq: int = 0

    def put(self, account: int, at: float) -> None:
        self.due[account] = at
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, account))

    def first(self) -> tuple[float, int] | None:
        while self.heap:
            at, _, account = self.heap[0]
            if self.due.get(account) == at:
                return at, account
            heapq.heappop(self.heap)  # removed or rescheduled
        return None

    def pop(self, account: int) -> None:
        self.due.pop(account, None)


class SnapshotScheduler:
    """Decides when each account is read, paces the reads, turns them into points."""

    def __init__(
        self,
        client: SnapshotClient,
        creds_of: Callable[[int], ApiCredentials | None],
        points: trio.MemorySendChannel[Bundle],
        *,
        interval: float,
        rate: float,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        concurrency: int = CONCURRENCY,
        observe: Callable[[Iterable[Point]], None] | None = None,
        book: AccountBook | None = None,
    ) -> None:
        self._client = client
        self._book = book if book is not None else AccountBook()
        self._observe = observe  # the shard's totals see what is sent, as pushes are seen
        self._creds_of = creds_of
        self._points = points
        self._interval = interval
        self._spacing = 1.0 / rate
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._in_flight = trio.Semaphore(concurrency)  # released by the task it admits
        self._accounts: dict[int, SnapshotStatus] = {}
        self._urgent: dict[int, str] = {}  # account -> why, in order of request
        self._queue = _Queue()
        self._next_slot = float("-inf")
        self._wake = trio.Event()
        self.totals = SnapshotTotals()

    # -- what the supervisor and the sessions call -----------------------------------

    def add(self, account: int, label: str) -> None:
        """Read ``account`` every interval, first at a random point of the first interval."""
        if account in self._accounts:
            return
        self._accounts[account] = SnapshotStatus(label)
        if self._interval > 0:
            self._queue.put(account, trio.current_time() + self._rng.uniform(0, self._interval))
            self._wake.set()

    def remove(self, account: int) -> None:
        """Stop reading ``account``."""
        self._accounts.pop(account, None)
        self._urgent.pop(account, None)
        self._queue.pop(account)

    def request(self, account: int, reason: str) -> None:
        """Read ``account`` as soon as the pace allows (coalesced while waiting)."""
        if account in self._accounts and account not in self._urgent:
            self._urgent[account] = reason
            self._wake.set()

    async def bridge(self, account: int) -> bool:
        """A snapshot now with the stored key (a rotation's new one); True when Gate answered.

        Taken outside the schedule's pace: a rotation at the connection limit asks
        once per backoff step, and its points bridge the old session's last push
        and the new session's first.
        """
        status = self._accounts.get(account)
        if status is None:
            return False
        try:
            await self._take_one(account, "rotation")
        except Exception as exc:  # contained as a scheduled snapshot's is
            self._crashed(account, exc)
            return False
        return status.state == STATE_OK

    def status(self, account: int) -> SnapshotStatus | None:
        """The account's snapshot status, None when it is not scheduled."""
        return self._accounts.get(account)

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Take snapshots forever (until cancelled)."""
        async with trio.open_nursery() as nursery:
            while True:
                account, reason = await self._next()
                status = self._accounts[account]
                status.in_flight, status.started_at = True, trio.current_time()
                await self._in_flight.acquire()
                nursery.start_soon(self._take, account, reason)

    async def _next(self) -> tuple[int, str]:
        """The next account to read, when the instance's pace and its own allow."""
        while True:
            now = trio.current_time()
            if now < self._next_slot:
                await trio.sleep_until(self._next_slot)
                continue
            pick, wait_until = self._pick(now)
            if pick is not None:
                self._next_slot = max(now, self._next_slot) + self._spacing
                return pick
            self._wake = trio.Event()
            with trio.move_on_at(wait_until):
                await self._wake.wait()

    def _pick(self, now: float) -> tuple[tuple[int, str] | None, float]:
        """(account, reason) due now, else None and when to look again."""
        wait_until = float("inf")
        for account, reason in self._urgent.items():
            status = self._accounts[account]
            ready = status.started_at + MIN_ACCOUNT_SPACING
            if not status.in_flight and now >= ready:
                del self._urgent[account]
                self._queue.pop(account)
                return (account, reason), now
            if not status.in_flight:
                wait_until = min(wait_until, ready)
        first = self._queue.first()
        if first is not None:
            at, account = first
            if now >= at and not self._accounts[account].in_flight:
                self._queue.pop(account)
                return (account, "interval"), now
            wait_until = min(wait_until, at)
        return None, wait_until

    async def _take(self, account: int, reason: str) -> None:
        try:
            await self._take_one(account, reason)
        except Exception as exc:  # one snapshot's failure never stops the scheduler
            self._crashed(account, exc)
        finally:
            self._in_flight.release()
            status = self._accounts.get(account)
            if status is not None:
                status.in_flight = False
            self._wake.set()

    def _crashed(self, account: int, exc: Exception) -> None:
        self.totals.crashes += 1
        log.error("snapshot_crashed", account=account, error=repr(exc)[:300])
        status = self._accounts.get(account)
        if status is not None:
            self._failed(account, status, f"crashed: {exc!r}"[:200])

    async def _take_one(self, account: int, reason: str) -> None:
        status = self._accounts.get(account)
        if status is None:  # removed (disabled, gone) while it waited for a slot
            return
        creds = self._creds_of(account)
        if creds is None:
            self._failed(account, status, "no stored key", RETRY[1])
            return
        try:
            body, read_at = await self._client.read(creds)
        except NotUnifiedError as exc:
            self._book.set_mode(account, exc.mode)
            self._settle(account, status, STATE_NOT_UNIFIED, str(exc), SLOW_RETRY)
            return
        except GateAPIError as exc:
            if exc.refusal in CONFIG_REFUSALS:  # no retry cures it soon
                self._settle(account, status, STATE_FORBIDDEN, str(exc), SLOW_RETRY)
            else:
                self._failed(account, status, str(exc))
            return
        except GateError as exc:
            self._failed(account, status, str(exc))
            return
        time_ms = self._book.snapshot_time(account, int(read_at * 1000))
        result = snapshot_points(account, status.label, body, time_ms)
        if result.user_id is not None and result.user_id != account:
            self._failed(account, status, f"user_id {result.user_id} is not this account")
            return
        self._learn(account, result, time_ms)
        self.totals.invalid_fields += result.invalid_fields
        if result.points:
            if self._observe is not None:
                self._observe(result.points)
            await self._points.send(result.points)
        status.taken += 1
        self.totals.taken += 1
        status.failures, status.last_at = 0, trio.current_time()
        log.debug("snapshot", account=account, reason=reason, points=len(result.points))
        self._settle(account, status, STATE_OK, "", self._interval)

    def _learn(self, account: int, result: SnapshotPoints, time_ms: int) -> None:
        """The snapshot's mode, its not-applicable zeros and its rates, into the book."""
        book = self._book
        book.set_mode(account, result.mode)
        book.values_not_applicable += result.values_not_applicable
        book.values_mode_unknown += result.values_mode_unknown
        if result.not_applicable:
            book.facts(account).not_applicable.update(result.not_applicable)
        if book.unit.looking:
            for field_, ratio in result.rates:
                book.unit.rest_rate(account, field_, ratio, time_ms)

    def _failed(
        self, account: int, status: SnapshotStatus, reason: str, wait: float | None = None
    ) -> None:
        status.failures += 1
        delay = wait if wait is not None else backoff_delay(status.failures, *RETRY, self._rng)
        self._settle(account, status, STATE_FAILING, reason, delay)

    def _settle(
        self, account: int, status: SnapshotStatus, state: str, reason: str, next_in: float
    ) -> None:
        """Record the outcome, log it once per change of state, schedule the next read."""
        if state != STATE_OK:
            status.failed += 1
            self.totals.failed += 1
        if state != status.state:
            self._log_change(account, status.state, state, reason)
        status.state, status.reason = state, reason
        if account in self._accounts and next_in > 0:
            self._queue.put(account, trio.current_time() + next_in)

    @staticmethod
    def _log_change(account: int, old: str, new: str, reason: str) -> None:
        if new == STATE_OK:
            if old != STATE_NONE:
                log.info("snapshot_recovered", account=account, was=old)
        elif new == STATE_FAILING:
            log.warning("snapshot_failing", account=account, reason=reason, hint="retrying")
        elif new == STATE_NOT_UNIFIED:
            log.error(
                "account_not_unified",
                account=account,
                reason=reason,
                hint="switch the sub-account to unified account mode on Gate",
            )
        else:
            log.error(
                "snapshot_forbidden",
                account=account,
                reason=reason,
                hint="the key lacks a permission for unified data (or the IP is not "
                "whitelisted): fix the key's permissions",
            )
