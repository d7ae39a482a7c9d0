"""Update events -> points (DESIGN.md section 4), and the sequence check on ``u`` (section 3).

A field whose value is not a finite number is dropped and counted; the rest of
the update is kept. Partial updates write only what they carry. No update is
ever dropped because of ``u``; the one exception is a ``u`` that names another
account on a channel where ``u`` is the account's identity (a key paired with
the wrong account), which is rejected and flagged.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from collector.gate.protocol import ASSET_DETAIL, ASSETS, Update
from collector.lineproto import DECIMALS, FieldValue, FloatText, Point, float_text

ASSETS_MEASUREMENT: Final = "gate_unified_assets"
DETAIL_MEASUREMENT: Final = "gate_unified_asset_detail"
GAP_MEASUREMENT: Final = "gate_sequence_gap"

ASSETS_FIELDS: Final = {
    "r": "total_initial_margin_rate",
    "R": "total_maintenance_margin_rate",
    "b": "total_margin_balance",
    "e": "unified_account_total_equity",
    "l": "unified_account_total_liab",
    "T": "unified_account_total",
    "a": "total_available_margin",
}
DETAIL_FIELDS: Final = {
    "a": "available",
    "f": "freeze",
    "e": "equity",
    "tl": "total_liab",
    "b": "balance",
    "cb": "cross_balance",
    "mb": "margin_balance",
    "im": "initial_margin",
    "mm": "maintenance_margin",
    "imr": "initial_margin_rate",
    "mmr": "maintenance_margin_rate",
    "am": "available_margin",
    "iam": "iso_available_margin",
}
# Keys that are not numbers to write: identity/sequence/time, and the deprecated `c`.
_ASSETS_SKIP: Final = frozenset({"u", "t", "c"})
_DETAIL_SKIP: Final = frozenset({"u", "t", "dts"})


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
        if u == self.account:
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
            gap = Gap(channel, "reconnect", -1, -1, -1)
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
                Gap(channel, "reconnect", expected, u, missed),
            )
        if u == expected:
            state.counting = True
            return Sequence.IN_ORDER, None
        if u > expected:
            return Sequence.GAP, Gap(channel, "sequence", expected, u, u - expected)
        return Sequence.REPEAT, None


@dataclass
class Normalized:
    """What one update turned into."""

    points: list[Point] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    invalid_fields: int = 0
    rejected: str | None = None  # the reason, when the frame must not be written
    resubscribe: bool = False  # a sequence gap: resynchronise the channel


def _number(value: Any) -> FieldValue | None:
    """A decimal string or JSON number -> a writable float field, else None."""
    kind = type(value)
    if kind is str:
        return float_text(value)
    if kind is float:
        return value if value - value == 0 else None
    if kind is int:
        return float(value)
    return None


def _all_decimal_strings(
    values: dict[str, Any], names: dict[str, str]
) -> dict[str, FieldValue] | None:
    """The hot path: every value a plain decimal string, checked with one regex."""
    try:
        joined = ",".join(values.values())
    except TypeError:  # some value is not a string
        return None
    if not DECIMALS.fullmatch(joined):
        return None
    get = names.get
    return {get(key, key): FloatText(value) for key, value in values.items()}


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
    """Turns one account's updates into points, checking ``u`` on the way."""

    def __init__(
        self, account: int, label: str, other_accounts: Container[int] = frozenset()
    ) -> None:
        self.account = account
        self.sequence = SequenceTracker(account, other_accounts)
        self._account_tags = (("account", str(account)), ("account_label", label))
        self._detail_tags: dict[str, tuple[tuple[str, str], ...]] = {}

    def normalize(self, update: Update) -> Normalized:
        """Points, gaps and counts for one update event."""
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
            out.points.append(self._gap_point(gap, time_ms))
            out.resubscribe = out.resubscribe or gap.reason == "sequence"
        common = self._common_fields(result)
        if update.channel == ASSETS:
            self._assets(result, common, time_ms, out)
        elif update.channel == ASSET_DETAIL:
            self._detail(result, common, time_ms, out)

    @staticmethod
    def _common_fields(result: dict[str, Any]) -> dict[str, FieldValue]:
        fields: dict[str, FieldValue] = {}
        u, t = result.get("u"), result.get("t")
        if type(u) is int:
            fields["u"] = u
        if type(t) is int:
            fields["refresh_time"] = t
        return fields

    def _assets(
        self, result: dict[str, Any], common: dict[str, FieldValue], time_ms: int, out: Normalized
    ) -> None:
        fields = self._numbers(result, ASSETS_FIELDS, _ASSETS_SKIP, out)
        if fields:
            fields.update(common)
            out.points.append(Point(ASSETS_MEASUREMENT, self._account_tags, fields, time_ms))

    def _detail(
        self, result: dict[str, Any], common: dict[str, FieldValue], time_ms: int, out: Normalized
    ) -> None:
        for currency, values in result.get("dts", {}).items():
            if not isinstance(values, dict):
                out.invalid_fields += 1
                continue
            fields = self._numbers(values, DETAIL_FIELDS, frozenset(), out)
            if fields:
                fields.update(common)
                out.points.append(Point(DETAIL_MEASUREMENT, self._tags(currency), fields, time_ms))

    def _tags(self, currency: str) -> tuple[tuple[str, str], ...]:
        tags = self._detail_tags.get(currency)
        if tags is None:
            tags = self._detail_tags[currency] = (*self._account_tags, ("currency", currency))
        return tags

    @staticmethod
    def _numbers(
        values: dict[str, Any], names: dict[str, str], skip: frozenset[str], out: Normalized
    ) -> dict[str, FieldValue]:
        if not skip:
            fast = _all_decimal_strings(values, names)
            if fast is not None:
                return fast
        fields: dict[str, FieldValue] = {}
        for key, raw in values.items():
            if key in skip:
                continue
            number = _number(raw)
            if number is None:
                out.invalid_fields += 1
                continue
            fields[names.get(key, key)] = number
        return fields

    def _gap_point(self, gap: Gap, time_ms: int) -> Point:
        tags = (("account", str(self.account)), ("channel", gap.channel), ("reason", gap.reason))
        fields: dict[str, FieldValue] = {
            "expected": gap.expected,
            "received": gap.received,
            "missed": gap.missed,
        }
        return Point(GAP_MEASUREMENT, tags, fields, time_ms)
