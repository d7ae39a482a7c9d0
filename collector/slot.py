"""One account's slot (its session task, address, counters) and the supervisor's counters.

Plain data shared by :mod:`collector.supervisor`, :mod:`collector.slot_runner`
and :mod:`collector.key_lifecycle`; no behaviour beyond small pure helpers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

import trio

from collector.gate.models import SubAccount
from collector.session import AccountSession, SessionStats
from collector.timers import Timer


@dataclass(slots=True)
class Slot:
    """One account with a session: what runs for it and where."""

    account: SubAccount
    scope: trio.CancelScope
    stats: SessionStats
    local_address: str | None
    replacements: int = 0
    # Refusals in a row (backoff of grace retries and of config refusals).
    refusals: int = 0
    # Keys of this instance other than the stored one may be left on Gate: delete
    # them once the stored key has delivered data.
    retire_pending: bool = False
    nursery: trio.Nursery | None = None
    # The running session task: its cancel scope and an event set when it ended.
    drive: tuple[trio.CancelScope, trio.Event] | None = None
    session: AccountSession | None = None  # the running one, for a SIGHUP
    # The next key upkeep (a deadline in the shared timers) and the points it last saw.
    upkeep: Timer | None = None
    upkeep_seen: int | None = None


@dataclass
class SupervisorStats:
    """Counters of the supervisor itself."""

    discoveries: int = 0
    discovery_errors: int = 0
    key_replacements: int = 0
    key_rotations: int = 0
    key_errors: int = 0
    # Refusals a new key cannot cure (IP whitelist, permissions): the config is wrong.
    key_config_refusals: int = 0
    over_capacity: set[int] = field(default_factory=set)
    keyless: dict[int, str] = field(default_factory=dict)  # account -> its label
    # Failures a slot contained (its session, upkeep or rotation raised), by cause.
    session_crashes: Counter[str] = field(default_factory=Counter)


def label(account: SubAccount) -> str:
    """The name an operator knows the account by (its id when it has no name)."""
    return account.name or account.id


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
