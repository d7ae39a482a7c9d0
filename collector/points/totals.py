"""Per-shard totals and per-account state from the last known values (pure: no I/O, no clock).

Gate pushes only on change, so an account may write nothing for hours; a
dashboard summing ``last()`` over its time range then loses the quiet accounts,
and InfluxDB 1.x cannot carry ``fill(previous)`` from a subquery into an outer
``sum()``. Instead the collector remembers the last value of every account (and
account/currency) field it wrote, and every stats interval writes what it knows:
``gate_broker_totals`` and ``gate_currency_totals`` per shard, and one
``gate_account_state`` point per account. A panel then sums the shards' last
totals: exact over any range that holds one stats interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from collector.points import schema
from collector.points.lineproto import FieldValue, Point

Tags = tuple[tuple[str, str], ...]
_K = TypeVar("_K", str, tuple[str, str])


@dataclass(frozen=True)
class SessionState:
    """What the supervisor knows of one account's session."""

    label: str
    state: int  # schema.SESSION_CONNECTED / SESSION_DISCONNECTED / SESSION_OVER_CAPACITY
    seconds_since_frame: float | None = None


def _number(value: FieldValue) -> float | None:
    """A field value as a float (FloatText is Gate's decimal text); None for non-numbers."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except ValueError:
        return None


# what is kept of each account: its totals' share and its state's values
_ASSET_VALUES: Final = tuple(
    dict.fromkeys(schema.BROKER_TOTAL_FIELDS + schema.ACCOUNT_STATE_VALUES)
)


class TotalsTracker:
    """Observes every account point on its way to the sink; yields totals and state points."""

    def __init__(self, instance: str, shard: str) -> None:
        self._shard_tags: Tags = ((schema.TAG_INSTANCE, instance), (schema.TAG_SHARD, shard))
        self._assets: dict[str, dict[str, float]] = {}
        self._detail: dict[tuple[str, str], dict[str, float]] = {}
        self._labels: dict[str, str] = {}
        self._updated_ms: dict[str, int] = {}
        self._key_ms: dict[str | tuple[str, str], int] = {}

    def observe(self, points: Iterable[Point]) -> None:
        """Remember the last value of each account (and account/currency) field."""
        for point in points:
            if point.measurement == schema.ASSETS:
                tags = dict(point.tags)
                account = tags.get(schema.TAG_ACCOUNT)
                if account is not None and self._newer(account, point):
                    self._store(self._assets, account, point, _ASSET_VALUES)
                    self._seen(account, tags, point)
            elif point.measurement == schema.ASSET_DETAIL:
                tags = dict(point.tags)
                account, currency = tags.get(schema.TAG_ACCOUNT), tags.get(schema.TAG_CURRENCY)
                if account is not None and currency is not None:
                    key = (account, currency)
                    if self._newer(key, point):
                        self._store(self._detail, key, point, schema.CURRENCY_TOTAL_FIELDS)
                        self._seen(account, tags, point)

    def _newer(self, key: str | tuple[str, str], point: Point) -> bool:
        # An older point (a late REST snapshot, a replay) must not undo a newer value.
        if point.time_ms < self._key_ms.get(key, point.time_ms):
            return False
        self._key_ms[key] = point.time_ms
        return True

    @staticmethod
    def _store(
        table: dict[_K, dict[str, float]], key: _K, point: Point, names: tuple[str, ...]
    ) -> None:
        values = table.setdefault(key, {})
        for name in names:
            raw = point.fields.get(name)
            number = None if raw is None else _number(raw)
            if number is not None:
                values[name] = number

    def _seen(self, account: str, tags: dict[str, str], point: Point) -> None:
        self._labels[account] = tags.get(schema.TAG_ACCOUNT_LABEL, account)
        self._updated_ms[account] = max(point.time_ms, self._updated_ms.get(account, 0))

    def retain(self, accounts: Iterable[str]) -> None:
        """Forget accounts that left the shard (disabled, gone): their money is not ours."""
        keep = set(accounts)
        for account in [a for a in self._labels if a not in keep]:
            self._assets.pop(account, None)
            self._labels.pop(account, None)
            self._updated_ms.pop(account, None)
            self._key_ms.pop(account, None)
        for key in [k for k in self._detail if k[0] not in keep]:
            del self._detail[key]
            self._key_ms.pop(key, None)

    def totals(self, now_ms: int) -> list[Point]:
        """``gate_broker_totals`` of this shard and ``gate_currency_totals`` per currency."""
        broker: dict[str, FieldValue] = {schema.TOTALS_ACCOUNTS: len(self._assets)}
        for name in schema.BROKER_TOTAL_FIELDS:
            # always a float: an int 0 first would make InfluxDB refuse every later float
            broker[name] = float(sum(v[name] for v in self._assets.values() if name in v))
        out = [Point(schema.BROKER_TOTALS, self._shard_tags, broker, now_ms)]
        per_currency: dict[str, dict[str, float]] = {}
        counts: dict[str, int] = {}
        for (_, currency), values in self._detail.items():
            sums = per_currency.setdefault(
                currency, dict.fromkeys(schema.CURRENCY_TOTAL_FIELDS, 0.0)
            )
            counts[currency] = counts.get(currency, 0) + 1
            for name, value in values.items():
                sums[name] += value
        for currency in sorted(per_currency):
            fields: dict[str, FieldValue] = {schema.TOTALS_ACCOUNTS: counts[currency]}
            fields.update(per_currency[currency])
            tags = (*self._shard_tags, (schema.TAG_CURRENCY, currency))
            out.append(Point(schema.CURRENCY_TOTALS, tags, fields, now_ms))
        return out

    def account_states(self, sessions: Mapping[str, SessionState], now_ms: int) -> list[Point]:
        """One ``gate_account_state`` point per account of the shard (with or without data)."""
        out = []
        for account in sorted(sessions):
            session = sessions[account]
            fields: dict[str, FieldValue] = {
                schema.STATE_CONNECTED: int(session.state == schema.SESSION_CONNECTED),
                schema.STATE_SESSION: session.state,
            }
            if session.seconds_since_frame is not None:
                fields[schema.STATE_SECONDS_SINCE_FRAME] = round(session.seconds_since_frame, 3)
            updated = self._updated_ms.get(account)
            if updated is not None:
                fields[schema.STATE_SECONDS_SINCE_UPDATE] = max(0.0, (now_ms - updated) / 1000)
            known = self._assets.get(account, {})
            fields.update((k, known[k]) for k in schema.ACCOUNT_STATE_VALUES if k in known)
            label = self._labels.get(account) or session.label
            tags = (
                (schema.TAG_ACCOUNT, account),
                (schema.TAG_ACCOUNT_LABEL, label),
                *self._shard_tags,
            )
            out.append(Point(schema.ACCOUNT_STATE, tags, fields, now_ms))
        return out
