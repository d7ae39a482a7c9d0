"""One account's slot (its key, address, counters, running session) and the supervisor's counters.

Plain data shared by :mod:`~collector.supervisor.supervisor`, :mod:`~collector.supervisor.runner`
and :mod:`~collector.supervisor.table`; no behaviour beyond small pure helpers. What the key
lifecycle keeps of an account is its :class:`~collector.keys.lifecycle.KeyState`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

from collector.gate.models import SubAccount
from collector.keys.lifecycle import KeyState, KeyStats
from collector.session.session import AccountSession, SessionStats


@dataclass(slots=True)
class Slot:
    """One account with a session: what it is served with and where (no task handles:
    the table holds its task's, the runner's frames hold the rest)."""

    key: KeyState  # the account and what the key lifecycle remembers of it
    stats: SessionStats
    local_address: str | None
    session: AccountSession | None = None  # the running one, for a SIGHUP
    upkeep_seen: int | None = None  # the points the last key upkeep saw

    @property
    def account(self) -> SubAccount:
        """The account this slot serves."""
        return self.key.account


@dataclass
class SupervisorStats(KeyStats):
    """Counters of the supervisor itself (the key lifecycle's among them)."""

    discoveries: int = 0
    discovery_errors: int = 0
    discovery_failing: bool = False  # the last discovery (broker API) failed
    # Rotations without a spare connection on the address: the old session closed first.
    key_rotations_break_before_make: int = 0
    over_capacity: set[int] = field(default_factory=set)
    # Failures a slot contained (its session, upkeep or rotation raised), by cause.
    session_crashes: Counter[str] = field(default_factory=Counter)


def crash_cause(exc: BaseException) -> str:
    """The cause a crash is counted under: the first exception's type inside any group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return type(exc).__name__


def merge_counters(into: SessionStats, old: SessionStats) -> None:
    """Add the counters of a session that was replaced to its successor's."""
    for item in fields(SessionStats):
        value = getattr(old, item.name)
        if type(value) is int:
            setattr(into, item.name, getattr(into, item.name) + value)
