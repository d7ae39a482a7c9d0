"""Update events -> line text (DESIGN.md section 4), checking ``u`` with the sequence tracker.

A field whose value is not a finite number is dropped and counted; the rest of
the update is kept. Partial updates write only what they carry. No update is
ever dropped because of ``u``; the one exception is a ``u`` that names another
account on a channel where ``u`` is the account's identity (a key paired with
the wrong account), which is rejected and flagged.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from collector.gate.protocol import ASSET_DETAIL, ASSETS, Update
from collector.gate.sequence import REASON_SEQUENCE, Gap, Sequence, SequenceTracker
from collector.points import schema
from collector.points.book import AccountBook, AccountFacts
from collector.points.direct import DEFAULT_MAX_CURRENCIES, AccountLines, Observer
from collector.points.lineproto import Bundle, FieldValue, Point


class Normalized:
    """What one update turned into: the data as line text, sequence gaps as points."""

    __slots__ = ("gap_points", "gaps", "invalid_fields", "lines", "over_cap", "rejected", "resync")

    def __init__(self) -> None:  # one per push: plain slots, no dataclass factories
        self.lines: list[str] = []  # the data, already line protocol
        self.gap_points: list[Point] = []
        self.gaps: list[Gap] = []
        self.invalid_fields = 0
        self.rejected: str | None = None  # the reason, when the frame must not be written
        # Currencies left out: new to this account beyond its cap (one line each).
        self.over_cap = 0
        self.resync = False  # a sequence gap: take a snapshot of the account

    def records(self) -> Bundle:
        """Everything to hand to the sink, gap points first."""
        return [*self.gap_points, *self.lines] if self.gap_points else self.lines


def timestamp_ms(update: Update, result: dict[str, Any]) -> int | None:
    """The frame's ``time_ms``, else the result's ``t``, else the frame's ``time`` (s)."""
    if update.time_ms is not None:
        return update.time_ms
    t = result.get("t")
    if type(t) is int:
        return t * 1000
    if update.time is not None:
        return update.time * 1000
    return None


class Normalizer:
    """One account's updates -> lines (:mod:`collector.points.direct`), ``u`` checked."""

    def __init__(
        self,
        account: int,
        label: str,
        other_accounts: Container[int] = frozenset(),
        max_currencies: int = DEFAULT_MAX_CURRENCIES,
        observer: Observer | None = None,
        facts: AccountFacts | None = None,
    ) -> None:
        self.account = account
        self.max_currencies = max_currencies
        self.sequence = SequenceTracker(account, other_accounts)
        # Alone (tests, tools): a book of its own, pushed rates taken as ratios.
        self.facts = facts if facts is not None else AccountBook().facts(account)
        self._lines = AccountLines(account, label, observer, max_currencies, self.facts)

    def reconnected(self) -> None:
        """The connection was re-established: the next update on each channel records it."""
        self.sequence.reconnected()

    def normalize(self, update: Update) -> Normalized:
        """Lines, gap points and counts for one update event."""
        out = Normalized()
        for result in update.results:
            self._one(update, result, out)
        return out

    def _one(self, update: Update, result: dict[str, Any], out: Normalized) -> None:
        time_ms = timestamp_ms(update, result)
        if time_ms is None:
            out.rejected = "no time_ms, t or time to stamp the point with"
            return
        outcome, gap = self.sequence.observe(update.channel, result.get("u"))
        if outcome is Sequence.MISMATCH:
            out.rejected = (
                f"u={result.get('u')} on {update.channel} is not account {self.account}: "
                "the key belongs to another account"
            )
            return
        if gap is not None:
            out.gaps.append(gap)
            out.gap_points.append(self._gap_point(gap, time_ms))
            out.resync = out.resync or gap.reason == REASON_SEQUENCE
        self.facts.pushed(time_ms)
        if update.channel == ASSETS:
            out.invalid_fields += self._lines.assets(result, time_ms, out.lines)
        elif update.channel == ASSET_DETAIL:
            bad, over_cap = self._lines.detail(result, time_ms, out.lines)
            out.invalid_fields += bad
            out.over_cap += over_cap

    def _gap_point(self, gap: Gap, time_ms: int) -> Point:
        tags = (
            (schema.TAG_ACCOUNT, str(self.account)),
            (schema.TAG_CHANNEL, gap.channel),
            (schema.TAG_REASON, gap.reason),
        )
        fields: dict[str, FieldValue] = {
            schema.GAP_EXPECTED: gap.expected,
            schema.GAP_RECEIVED: gap.received,
            schema.GAP_MISSED: gap.missed,
        }
        return Point(schema.SEQUENCE_GAP, tags, fields, time_ms)
