"""Small in-test fakes of what the per-account lifecycle calls: the broker, the key
store and provisioner, and the sessions. They record what they were asked, with the
trio time, so a test asserts on the order of events, never on a wall clock.

Each fake implements only the methods the code under test calls; tests pass them
with ``typing.cast`` to the real type (the code takes the concrete classes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from collector.gate.errors import GateError, NotFoundError
from collector.gate.models import SubAccount
from collector.gate.protocol import AuthenticationFailed
from collector.gate.signing import ApiCredentials
from collector.keys import KeyPolicy, ProvisionReport, StoredKey
from collector.session.session import SessionStats


def account(gate_id: int, status: str = "enabled") -> SubAccount:
    """A sub-account as the broker lists it."""
    return SubAccount(id=str(gate_id), name=f"acct{gate_id}", gate_id=gate_id, status=status)


class FakeStore:
    """The key store's lookups: one key per account, in memory."""

    def __init__(self) -> None:
        self.keys: dict[int, StoredKey] = {}
        self.write_errors = 0

    def get(self, user_id: int) -> StoredKey | None:
        """The stored key of ``user_id``."""
        return self.keys.get(user_id)

    def sweeps(self) -> list[int]:
        """Accounts marked for an orphan sweep: none in these tests."""
        return []

    def put(self, stored: StoredKey) -> None:
        """Store ``stored`` (replacing the account's key)."""
        self.keys[stored.user_id] = stored


@dataclass
class FakeProvisioner:
    """Creates keys named ``k1``, ``k2``, ... into ``store``; failures are scripted."""

    store: FakeStore
    # Raised by the next create() calls, in order (then creates succeed).
    create_failures: list[Exception] = field(default_factory=list)
    retire_failures: list[Exception] = field(default_factory=list)
    # Keys whose rotation is due now; keys Gate may still be activating.
    due: set[str] = field(default_factory=set)
    grace: set[str] = field(default_factory=set)
    # Keys Gate has (exists_on_gate); None: asking Gate fails.
    on_gate: set[str] | None = field(default_factory=set)
    # Accounts whose creation ensure_keys reports as failed.
    ensure_fails: set[int] = field(default_factory=set)
    created: list[tuple[float, int, str]] = field(default_factory=list)  # (time, account, key)
    retired: list[tuple[float, int]] = field(default_factory=list)
    working: set[str] = field(default_factory=set)
    ensured: list[list[int]] = field(default_factory=list)  # the accounts of each pass
    attempts: int = 0
    policy: KeyPolicy = field(default_factory=KeyPolicy)
    stored_events: dict[int, trio.Event] = field(default_factory=dict)

    def key_stored(self, user_id: int) -> trio.Event:
        """An event set the next time a key is stored for ``user_id``."""
        return self.stored_events.setdefault(user_id, trio.Event())

    async def sweep_orphans(self) -> int:
        """Nothing is marked for a sweep here."""
        await trio.lowlevel.checkpoint()
        return 0

    async def create(self, user_id: int) -> StoredKey:
        """A new key for ``user_id``, stored (or the next scripted failure)."""
        await trio.lowlevel.checkpoint()
        self.attempts += 1
        if self.create_failures:
            raise self.create_failures.pop(0)
        stored = StoredKey(user_id, f"k{len(self.created) + 1}", "secret", created_at=1.0)
        self.store.put(stored)
        self.created.append((trio.current_time(), user_id, stored.key))
        waiting = self.stored_events.pop(user_id, None)
        if waiting is not None:
            waiting.set()
        return stored

    async def retire(self, user_id: int) -> int:
        """Record a retirement of the account's other keys."""
        await trio.lowlevel.checkpoint()
        if self.retire_failures:
            raise self.retire_failures.pop(0)
        self.retired.append((trio.current_time(), user_id))
        return 1

    async def ensure_keys(self, accounts: Iterable[SubAccount]) -> ProvisionReport:
        """A key for each account without one, but those in ``ensure_fails``."""
        report = ProvisionReport()
        batch = list(accounts)
        self.ensured.append([a.gate_id for a in batch])
        for sub in batch:
            if sub.gate_id in self.ensure_fails:
                report.failed[sub.gate_id] = "scripted failure"
            elif self.store.get(sub.gate_id) is None:
                await self.create(sub.gate_id)
                report.created.append(sub.gate_id)
            else:
                report.reused.append(sub.gate_id)
        return report

    def rotation_due_in(self, stored: StoredKey) -> float | None:
        """0 for a key in ``due``, else None (never)."""
        return 0.0 if stored.key in self.due else None

    def mark_working(self, key: str) -> None:
        """Record that ``key`` delivered data."""
        self.working.add(key)

    def in_grace(self, stored: StoredKey) -> bool:
        """Whether ``stored`` is young and never worked (scripted by ``grace``)."""
        return stored.key in self.grace and stored.key not in self.working

    def age(self, stored: StoredKey) -> float:
        """Every key is ten seconds old."""
        return 10.0

    async def exists_on_gate(self, stored: StoredKey) -> bool:
        """Whether Gate has ``stored``; GateError when ``on_gate`` is None."""
        await trio.lowlevel.checkpoint()
        if self.on_gate is None:
            raise GateError("Gate cannot be asked now")
        return stored.key in self.on_gate


@dataclass
class FakeBroker:
    """The broker's account lookups: ``accounts`` by id; an absent id is NotFound."""

    accounts: dict[int, SubAccount] = field(default_factory=dict)
    clock_skew: float = 0.0
    lookups: int = 0
    listings: list[float] = field(default_factory=list)  # trio time of each listing
    list_failures: list[Exception] = field(default_factory=list)

    async def get_sub_account(self, user_id: int) -> SubAccount:
        """The account, or NotFoundError."""
        await trio.lowlevel.checkpoint()
        self.lookups += 1
        if user_id not in self.accounts:
            raise NotFoundError(404, "USER_NOT_FOUND", f"no sub-account {user_id}")
        return self.accounts[user_id]

    async def list_sub_accounts(self, **_: Any) -> AsyncIterator[SubAccount]:
        """Every account, after recording the listing's time."""
        self.listings.append(trio.current_time())
        if self.list_failures:
            raise self.list_failures.pop(0)
        for sub in list(self.accounts.values()):
            await trio.lowlevel.checkpoint()
            yield sub


@dataclass
class Plan:
    """What a fake session does with a key: from ``delay`` on, deliver a point every
    ``every`` seconds; with ``refuse`` (a refusal reason) or ``crash``, deliver
    ``points`` points and then fail that way."""

    delay: float = 1.0
    every: float = 1.0
    refuse: str | None = None
    crash: bool = False
    points: int = 0


@dataclass
class Run:
    """One fake session's life: its key, when it started, delivered and ended."""

    account: int
    key: str
    started: float
    first_point: float | None = None
    ended: float | None = None
    points: int = 0


class FakeSession:
    """Runs a :class:`Plan`; counts its points in ``stats`` (the runner sets it)."""

    def __init__(self, sessions: FakeSessions, account_id: int, key: str) -> None:
        self._sessions = sessions
        self.account_id = account_id
        self.key = key
        self.stats = SessionStats()
        self.currency_changes = 0

    def change_currencies(self, gate: object) -> None:
        """Record a currency change."""
        self.currency_changes += 1

    async def run(self) -> None:
        """Follow the key's plan until cancelled (or the plan fails)."""
        record = Run(self.account_id, self.key, trio.current_time())
        self._sessions.runs.append(record)
        try:
            if len(self._sessions.runs) > self._sessions.limit:
                await trio.sleep_forever()  # a runaway restart loop stops here, idle
            plan = self._sessions.plans.get(self.key, self._sessions.default)
            await trio.sleep(plan.delay)
            fails = plan.refuse is not None or plan.crash
            while not fails or record.points < plan.points:
                self.stats.points += 1
                if self.stats.delivered is not None:  # as the session's updates do
                    self.stats.delivered.set()
                record.points += 1
                if record.first_point is None:
                    record.first_point = trio.current_time()
                await trio.sleep(plan.every)
            if plan.refuse is not None:
                raise AuthenticationFailed(self.account_id, plan.refuse)
            raise OSError("connection reset by peer")
        finally:
            record.ended = trio.current_time()


@dataclass
class FakeSessions:
    """A session factory with the runner's signature; plans by key, a record per run."""

    plans: dict[str, Plan] = field(default_factory=dict)
    default: Plan = field(default_factory=Plan)
    # Runs past this many sleep forever: a mutant that restarts without a pause
    # leaves the clock idle instead of spinning (the test then fails on its values).
    limit: int = 50
    runs: list[Run] = field(default_factory=list)
    made: list[FakeSession] = field(default_factory=list)

    def __call__(
        self, account_id: int, label: str, credentials: ApiCredentials, *args: Any, **kw: Any
    ) -> FakeSession:
        session = FakeSession(self, account_id, credentials.key)
        self.made.append(session)
        return session

    def of(self, key: str) -> list[Run]:
        """The runs of ``key``, in start order."""
        return [run for run in self.runs if run.key == key]
