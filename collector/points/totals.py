"""Per-shard totals and per-account state from the last known values (pure: no I/O, no clock).

Gate pushes only on change, so an account may write nothing for hours; a
dashboard summing ``last()`` over its time range then loses the quiet accounts,
and InfluxDB 1.x cannot carry ``fill(previous)`` from a subquery into an outer
``sum()``. Instead the collector remembers the last value of every account (and
account/currency) field it wrote, and every stats interval writes what it knows:
``gate_broker_totals`` and ``gate_currency_totals`` per shard, and one
``gate_account_state`` point per account. A panel then sums the shards' last
totals: exact over any range that holds one stats interval.

Pushes reach it as the values the hot path already checked
(:class:`collector.points.direct.Observer`: Gate short keys, decimal text), kept
as they came and turned into floats only when totals are written; points
(REST snapshots) through :meth:`TotalsTracker.observe`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from collector.points import modes, schema
from collector.points.book import AccountBook
from collector.points.lineproto import FieldValue, Point

Tags = tuple[tuple[str, str], ...]
Known = dict[str, Any]  # Gate short key -> a float, or a checked decimal text
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


def _short_keys(names: dict[str, str], wanted: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(Gate short key, long name) of the ``wanted`` long names."""
    return tuple((short, long) for short, long in names.items() if long in wanted)


_ASSET_KEYS: Final = _short_keys(schema.ASSETS_FIELDS, _ASSET_VALUES)
_BROKER_KEYS: Final = _short_keys(schema.ASSETS_FIELDS, schema.BROKER_TOTAL_FIELDS)
_STATE_KEYS: Final = tuple(
    (short, long)
    for long in schema.ACCOUNT_STATE_VALUES
    for short, name in schema.ASSETS_FIELDS.items()
    if name == long
)
_DETAIL_KEYS: Final = _short_keys(schema.DETAIL_FIELDS, schema.CURRENCY_TOTAL_FIELDS)
# what is kept of each currency: its totals' share and, for USDT, the single-currency rates
_DETAIL_RATE_NAMES: Final = (
    schema.DETAIL_MAINTENANCE_MARGIN_RATE,
    schema.DETAIL_INITIAL_MARGIN_RATE,
)
_DETAIL_KEPT: Final = _short_keys(
    schema.DETAIL_FIELDS, (*schema.CURRENCY_TOTAL_FIELDS, *_DETAIL_RATE_NAMES)
)
_SHORT: Final = {
    long: short
    for names in (schema.ASSETS_FIELDS, schema.DETAIL_FIELDS)
    for short, long in names.items()
}
_R, _RR = _SHORT[schema.MAINTENANCE_MARGIN_RATE], _SHORT[schema.INITIAL_MARGIN_RATE]
_MMR, _IMR = (
    _SHORT[schema.DETAIL_MAINTENANCE_MARGIN_RATE],
    _SHORT[schema.DETAIL_INITIAL_MARGIN_RATE],
)
_AT_MS: Final = "\0at_ms"  # the time of the newest values, beside them (no Gate key has a NUL)
_NOTHING: Final[Known] = {}


class TotalsTracker:
    """Observes every account point on its way to the sink; yields totals and state points."""

    def __init__(self, instance: str, shard: str, book: AccountBook | None = None) -> None:
        self._shard_tags: Tags = ((schema.TAG_INSTANCE, instance), (schema.TAG_SHARD, shard))
        # Each account's mode (from its snapshots): which rate is its effective one.
        self._book = book
        self._modes: dict[str, str | None] = {}  # the mode each account's values were kept under
        self._assets: dict[str, Known] = {}
        self._detail: dict[tuple[str, str], Known] = {}
        self._labels: dict[str, str] = {}
        self._updated_ms: dict[str, int] = {}
        self._tags_of: dict[str, Tags] = {}  # each account's state tags, for its label

    def observe(self, points: Iterable[Point]) -> None:
        """Remember the last value of each account (and account/currency) field."""
        for point in points:
            if point.measurement == schema.ASSETS:
                tags = dict(point.tags)
                account = tags.get(schema.TAG_ACCOUNT)
                if account is not None:
                    known = _known(self._assets, account)
                    _take(known, _from_point(point, _ASSET_KEYS), point.time_ms)
                    # read now, so Gate's state is confirmed now, newer values or not
                    self._seen(account, tags.get(schema.TAG_ACCOUNT_LABEL), point.time_ms)
            elif point.measurement == schema.ASSET_DETAIL:
                tags = dict(point.tags)
                account, currency = tags.get(schema.TAG_ACCOUNT), tags.get(schema.TAG_CURRENCY)
                if account is not None and currency is not None:
                    known = _known(self._detail, (account, currency))
                    _take(known, _from_point(point, _DETAIL_KEPT), point.time_ms)
                    self._seen(account, tags.get(schema.TAG_ACCOUNT_LABEL), point.time_ms)

    # -- the hot path's Observer (collector.points.direct): checked values by short key --
    # Kept as they came (one dict.update per line, under Gate's short keys), turned
    # into floats only when totals are written.

    def account_values(
        self, account: str, label: str, time_ms: int, values: Mapping[str, Any]
    ) -> None:
        """A pushed ``unified.assets`` line's values (checked: numbers or decimal text)."""
        known = self._assets.get(account)
        if known is None:
            known = self._assets[account] = {}
        _take(known, values, time_ms)
        self._seen(account, label, time_ms)

    def currency_values(
        self, account: str, label: str, currency: str, time_ms: int, values: Mapping[str, Any]
    ) -> None:
        """A pushed ``unified.asset_detail`` line's values for one currency."""
        key = (account, currency)
        known = self._detail.get(key)
        if known is None:
            known = self._detail[key] = {}
        _take(known, values, time_ms)
        self._seen(account, label, time_ms)

    def _seen(self, account: str, label: str | None, time_ms: int) -> None:
        """Gate's state of ``account`` confirmed at ``time_ms`` (a push or a snapshot):
        the newest confirmation also names the account."""
        updated = self._updated_ms.get(account)
        if updated is None or time_ms >= updated:
            self._updated_ms[account] = time_ms
            self._labels[account] = account if label is None else label

    def retain(self, accounts: Iterable[str]) -> None:
        """Forget accounts that left the shard (disabled, gone): their money is not ours."""
        keep = set(accounts)
        if self._book is not None:
            self._book.retain({int(a) for a in keep if a.isdigit()})
        tables: tuple[dict[str, Any], ...] = (
            self._assets,
            self._labels,
            self._updated_ms,
            self._modes,  # also of accounts with no values (account_states notes every mode)
            self._tags_of,
        )
        for table in tables:
            for account in [a for a in table if a not in keep]:
                del table[account]
        for key in [k for k in self._detail if k[0] not in keep]:
            del self._detail[key]

    def accounts_held(self) -> set[str]:
        """Every account the tracker holds anything of (values, label, cached tags)."""
        held = {*self._assets, *self._labels, *self._updated_ms, *self._modes, *self._tags_of}
        return held | {account for account, _ in self._detail}

    def totals(self, now_ms: int) -> list[Point]:
        """``gate_broker_totals`` of this shard and ``gate_currency_totals`` per currency."""
        broker: dict[str, FieldValue] = {schema.TOTALS_ACCOUNTS: len(self._assets)}
        for short, name in _BROKER_KEYS:
            # always a float: an int 0 first would make InfluxDB refuse every later float
            broker[name] = float(sum(float(v[short]) for v in self._assets.values() if short in v))
        out = [Point(schema.BROKER_TOTALS, self._shard_tags, broker, now_ms)]
        per_currency: dict[str, dict[str, float]] = {}
        counts: dict[str, int] = {}
        for (_, currency), values in self._detail.items():
            sums = per_currency.setdefault(
                currency, dict.fromkeys(schema.CURRENCY_TOTAL_FIELDS, 0.0)
            )
            counts[currency] = counts.get(currency, 0) + 1
            for short, name in _DETAIL_KEYS:
                value = values.get(short)
                if value is not None:
                    sums[name] += float(value)
        for currency in sorted(per_currency):
            fields: dict[str, FieldValue] = {schema.TOTALS_ACCOUNTS: counts[currency]}
            fields.update(per_currency[currency])
            tags = (*self._shard_tags, (schema.TAG_CURRENCY, currency))
            out.append(Point(schema.CURRENCY_TOTALS, tags, fields, now_ms))
        return out

    def account_states(self, sessions: Mapping[str, SessionState], now_ms: int) -> list[Point]:
        """One ``gate_account_state`` point per account of the shard (with or without data).

        Written for every account every stats interval (10,000 accounts: 1,000 points
        a second), so the loop keeps to plain lookups and each account's tags are built
        once per label.
        """
        out = []
        connected = schema.SESSION_CONNECTED
        updated_ms, assets, labels = self._updated_ms, self._assets, self._labels
        for account in sorted(sessions):
            session = sessions[account]
            state = session.state
            fields: dict[str, FieldValue] = {
                schema.STATE_CONNECTED: 1 if state == connected else 0,
                schema.STATE_SESSION: state,
            }
            if session.seconds_since_frame is not None:
                fields[schema.STATE_SECONDS_SINCE_FRAME] = round(session.seconds_since_frame, 3)
            updated = updated_ms.get(account)
            if updated is not None:
                fields[schema.STATE_SECONDS_SINCE_UPDATE] = max(0.0, (now_ms - updated) / 1000)
            mode = self._mode(account)
            if mode is not None:
                fields[schema.STATE_MODE] = mode
            known = assets.get(account)
            if known is not None:
                for short, name in _STATE_KEYS:
                    value = known.get(short)
                    if value is not None:
                        fields[name] = float(value)
            self._effective(account, mode, known, fields)
            tags = self._state_tags(account, labels.get(account) or session.label)
            out.append(Point(schema.ACCOUNT_STATE, tags, fields, now_ms))
        return out

    def _mode(self, account: str) -> str | None:
        """The account's mode; values kept under another mode that do not apply are dropped."""
        if self._book is None:
            return None
        try:
            mode = self._book.mode(int(account))
        except ValueError:
            return None
        if mode is not None and self._modes.get(account) != mode:
            self._modes[account] = mode
            _drop_not_applying(self._assets.get(account), mode, None)
            for (owner, currency), known in self._detail.items():
                if owner == account:
                    _drop_not_applying(known, mode, currency)
        return mode

    def _effective(
        self, account: str, mode: str | None, known: Known | None, fields: dict[str, FieldValue]
    ) -> None:
        """The effective margin rates of the account (modes.effective_rate)."""
        usdt = self._detail.get((account, modes.SINGLE_CURRENCY_MARGIN), _NOTHING)
        assets = known if known is not None else _NOTHING
        for name, account_key, usdt_key in (
            (schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE, _R, _MMR),
            (schema.EFFECTIVE_INITIAL_MARGIN_RATE, _RR, _IMR),
        ):
            rate = modes.effective_rate(
                mode, _float(assets.get(account_key)), _float(usdt.get(usdt_key))
            )
            if rate is not None:
                fields[name] = rate

    def _state_tags(self, account: str, label: str) -> Tags:
        tags = self._tags_of.get(account)
        if tags is None or tags[1][1] != label:
            tags = self._tags_of[account] = (
                (schema.TAG_ACCOUNT, account),
                (schema.TAG_ACCOUNT_LABEL, label),
                *self._shard_tags,
            )
        return tags


def _known(table: dict[_K, Known], key: _K) -> Known:
    known = table.get(key)
    if known is None:
        known = table[key] = {}
    return known


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _drop_not_applying(known: Known | None, mode: str, currency: str | None) -> None:
    """Forget kept values whose field does not apply in ``mode`` (the mode changed):
    the account's own values (``currency`` None) or one currency's."""
    if not known:
        return
    names = schema.ASSETS_FIELDS if currency is None else schema.DETAIL_FIELDS
    for short in [k for k in known if k in names]:
        long = names[short]
        if currency is None:
            applies = modes.assets_applies(mode, long)
        else:
            applies = modes.detail_applies(mode, long, currency)
        if applies is False:
            del known[short]


def _take(known: Known, values: Mapping[str, Any], time_ms: int) -> None:
    """Keep ``values`` unless ``known`` holds newer ones (a late snapshot, a replay)."""
    if time_ms >= known.get(_AT_MS, time_ms):
        known.update(values)
        known[_AT_MS] = time_ms


def _from_point(point: Point, keys: tuple[tuple[str, str], ...]) -> dict[str, float]:
    """A point's numeric fields under Gate's short keys (as pushes are kept)."""
    out = {}
    for short, long in keys:
        raw = point.fields.get(long)
        number = None if raw is None else _number(raw)
        if number is not None:
            out[short] = number
    return out
