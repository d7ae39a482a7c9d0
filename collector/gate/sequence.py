"""The checks of ``u`` per (account, channel), as DESIGN.md section 3 says (pure).

Gate's older examples show ``u`` as a growing counter, its current docs as the
user id; this tracker is right in both worlds. ``u == last + 1`` is in order,
``u > last + 1`` a gap (resynchronise), ``u <= last`` a repeat or a counter
restart (never dropped), ``u`` equal to the account's own id an identity (no
sequence on that channel), and ``u`` naming another of the broker's accounts a
key paired with the wrong account. A reconnect is a possible gap too.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from enum import Enum
from typing import Final

REASON_SEQUENCE: Final = "sequence"
REASON_RECONNECT: Final = "reconnect"


class Sequence(Enum):
    """What one ``u`` says about the stream."""

    FIRST = "first"
    IN_ORDER = "in_order"
    GAP = "gap"
    REPEAT = "repeat"  # u <= last: a repeat or a counter restart; never dropped
    IDENTITY = "identity"  # u is the account's user id: no sequence on this channel
    MISMATCH = "mismatch"  # u names another account: wrong key/account pairing
    UNKNOWN = "unknown"  # no usable u in the update


@dataclass(frozen=True, slots=True)
class Gap:
    """A hole in the stream, written as a ``gate_sequence_gap`` point."""

    channel: str
    reason: str  # "sequence" or "reconnect"
    expected: int
    received: int
    missed: int


@dataclass
class _ChannelSequence:
    last: int | None = None
    identity: bool = False
    counting: bool = False  # seen u step by one: a counter, whatever its values
    reconnected: bool = False


class SequenceTracker:
    """Per (account, channel) checks of ``u``, as DESIGN.md section 3 says.

    ``other_accounts`` are the broker's sub-accounts (this one may be among them:
    the set is shared by all sessions): a ``u`` naming another one of
    them on a channel that has not shown itself to be a counter is a key paired
    with the wrong account, even before this account's own id was ever seen.
    """

    def __init__(self, account: int, other_accounts: Container[int] = frozenset()) -> None:
        self.account = account
        self._others = other_accounts
        self._channels: dict[str, _ChannelSequence] = {}

    def reconnected(self) -> None:
        """The connection was re-established: the next update on each channel records it."""
        for state in self._channels.values():
            state.reconnected = True

    def observe(self, channel: str, u: object) -> tuple[Sequence, Gap | None]:
        """Classify ``u``; a gap (or a reconnect) comes with the :class:`Gap` to record."""
        state = self._channels.setdefault(channel, _ChannelSequence())
        if type(u) is not int:
            return Sequence.UNKNOWN, None
        if u == self.account and not state.counting:  # a counter may pass the account's id
            state.identity = True
        if state.identity:
            return self._identity(state, channel, u)
        if u in self._others and not state.counting:
            return Sequence.MISMATCH, None
        return self._counter(state, channel, u)

    def _identity(
        self, state: _ChannelSequence, channel: str, u: int
    ) -> tuple[Sequence, Gap | None]:
        if u != self.account:
            return Sequence.MISMATCH, None
        gap = None
        if state.reconnected:
            state.reconnected = False
            gap = Gap(channel, REASON_RECONNECT, -1, -1, -1)
        return Sequence.IDENTITY, gap

    def _counter(
        self, state: _ChannelSequence, channel: str, u: int
    ) -> tuple[Sequence, Gap | None]:
        last, state.last = state.last, u
        reconnected, state.reconnected = state.reconnected, False
        if last is None:
            return Sequence.FIRST, None
        expected = last + 1
        if reconnected:
            missed = u - expected if u >= expected else -1
            return (
                Sequence.GAP if u > expected else Sequence.IN_ORDER,
                Gap(channel, REASON_RECONNECT, expected, u, missed),
            )
        if u == expected:
            state.counting = True
            return Sequence.IN_ORDER, None
        if u > expected:
            return Sequence.GAP, Gap(channel, REASON_SEQUENCE, expected, u, u - expected)
        return Sequence.REPEAT, None
