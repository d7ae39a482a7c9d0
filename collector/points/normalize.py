"""Update events -> points (DESIGN.md section 4), checking ``u`` with the sequence tracker.

A field whose value is not a finite number is dropped and counted; the rest of
the update is kept. Partial updates write only what they carry. No update is
ever dropped because of ``u``; the one exception is a ``u`` that names another
account on a channel where ``u`` is the account's identity (a key paired with
the wrong account), which is rejected and flagged.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any, Final

from collector.gate.protocol import ASSET_DETAIL, ASSETS, Update
from collector.gate.sequence import REASON_SEQUENCE, Gap, Sequence, SequenceTracker
from collector.points import schema
from collector.points.lineproto import (
    DECIMALS,
    FieldValue,
    FloatText,
    Point,
    number_field,
)


@dataclass
class Normalized:
    """What one update turned into."""

    points: list[Point] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    invalid_fields: int = 0
    rejected: str | None = None  # the reason, when the frame must not be written
    # Currencies left out: new to this account beyond its cap (one point each).
    over_cap: int = 0
    resync: bool = False  # a sequence gap: take a snapshot of the account


def _all_decimal_strings(
    values: dict[str, Any], names: dict[str, str]
) -> dict[str, FieldValue] | None:
    """The hot path: every value a plain decimal string, checked with one regex.

    The values are joined with commas for that one check, so a value that itself
    holds a comma (``"1,5"``) would pass as two numbers: the comma count must be
    exactly the number of joins, else the slow path checks each value on its own.
    """
    try:
        joined = ",".join(values.values())
    except TypeError:  # some value is not a string
        return None
    if joined.count(",") != len(values) - 1 or not DECIMALS.fullmatch(joined):
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


# Gate's unified account lists a few hundred currencies; far more is a fault.
DEFAULT_MAX_CURRENCIES: Final = 1000


class Normalizer:
    """Turns one account's updates into points, checking ``u`` on the way."""

    def __init__(
        self,
        account: int,
        label: str,
        other_accounts: Container[int] = frozenset(),
        max_currencies: int = DEFAULT_MAX_CURRENCIES,
    ) -> None:
        self.account = account
        # One account sending thousands of new currencies must not poison the batch
        # (InfluxDB's max-values-per-tag) nor grow this cache without bound.
        self.max_currencies = max_currencies
        self.sequence = SequenceTracker(account, other_accounts)
        self._account_tags = ((schema.TAG_ACCOUNT, str(account)), (schema.TAG_ACCOUNT_LABEL, label))
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
            out.resync = out.resync or gap.reason == REASON_SEQUENCE
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
            fields[schema.FIELD_U] = u
        if type(t) is int:
            fields[schema.FIELD_REFRESH_TIME] = t
        return fields

    def _assets(
        self, result: dict[str, Any], common: dict[str, FieldValue], time_ms: int, out: Normalized
    ) -> None:
        fields = self._numbers(result, schema.ASSETS_FIELDS, schema.ASSETS_SKIP, out)
        if fields:
            fields.update(common)
            out.points.append(Point(schema.ASSETS, self._account_tags, fields, time_ms))

    def _detail(
        self, result: dict[str, Any], common: dict[str, FieldValue], time_ms: int, out: Normalized
    ) -> None:
        for currency, values in result.get("dts", {}).items():
            if not isinstance(values, dict):
                out.invalid_fields += 1
                continue
            fields = self._numbers(values, schema.DETAIL_FIELDS, frozenset(), out)
            if not fields:
                continue
            tags = self._tags(currency)
            if tags is None:
                out.over_cap += 1
                continue
            fields.update(common)
            out.points.append(Point(schema.ASSET_DETAIL, tags, fields, time_ms))

    def _tags(self, currency: str) -> tuple[tuple[str, str], ...] | None:
        """The tags of ``currency``'s points; None for a new one past the account's cap."""
        tags = self._detail_tags.get(currency)
        if tags is None:
            if len(self._detail_tags) >= self.max_currencies:
                return None
            tags = self._detail_tags[currency] = (
                *self._account_tags,
                (schema.TAG_CURRENCY, currency),
            )
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
            number = number_field(raw)
            if number is None:
                out.invalid_fields += 1
                continue
            fields[names.get(key, key)] = number
        return fields

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
