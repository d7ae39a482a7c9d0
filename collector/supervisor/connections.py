"""Gate's per-IP connection limit, as this process keeps it.

Gate allows ``gate.max_connections_per_ip`` WebSocket connections per source
address and counts every one: a slot's session, and a rotation's successor
running beside the old session. A slot holds one place on its address for as
long as it lives (:mod:`collector.supervisor.table` counts them in :attr:`slots`);
anything beyond that must take an extra place first and give it back, and when
none is left the caller does without (a rotation goes break-before-make) rather
than open a connection Gate would refuse.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


class ConnectionBudget:
    """Places per source address (None: the default route) under Gate's limit."""

    __slots__ = ("_limit", "extra", "slots")

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit  # the current gate.max_connections_per_ip (SIGHUP may change it)
        self.slots: Counter[str | None] = Counter()  # one place per slot, kept by the table
        self.extra: Counter[str | None] = Counter()  # places beyond the slots' own

    def in_use(self, address: str | None) -> int:
        """Places held on ``address``: its slots and the extra ones."""
        return self.slots[address] + self.extra[address]

    def try_extra(self, address: str | None) -> bool:
        """Take an extra place on ``address`` if Gate's limit leaves one; never waits."""
        if self.in_use(address) >= self._limit():
            return False
        self.extra[address] += 1
        return True

    def release_extra(self, address: str | None) -> None:
        """Give an extra place back."""
        self.extra[address] -= 1
