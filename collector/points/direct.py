"""The hot path: one update's results straight to line-protocol text (pure).

For the two known measurements the collector writes the same few series over and
over, so each account keeps its escaped series keys (``measurement,tags ``) and
every Gate short key maps once to its escaped ``long_name=`` prefix (names from
:mod:`collector.points.schema`). A frame then costs one regex check over all its
values and one string join per line: no ``Point``, no dict and no object per
field. The text equals :class:`collector.points.lineproto.Encoder`'s for the
point the same values would make (tests parse it back and check it against
``influxdb_client``).

Every value is checked on its own: a frame's values are joined with commas and
matched once; a frame with any bad value (or a value holding a comma, like
``"1,5"``, which the comma count gives away), or a key not in the schema, falls
back to checking each value, and only the bad fields are dropped and counted.

What is written is also told to an :class:`Observer` (the shard's totals), as the
Gate short keys and the checked values: the totals never parse line text back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from collector.points import schema
from collector.points.book import AccountFacts
from collector.points.lineproto import DECIMALS, escape_key, float_text, series_key

# Gate's unified account lists a few hundred currencies; far more is a fault.
DEFAULT_MAX_CURRENCIES: Final = 1000


class Observer(Protocol):
    """Told every written account line's checked values, by Gate short key."""

    def account_values(
        self, account: str, label: str, time_ms: int, values: Mapping[str, Any]
    ) -> None:
        """One ``unified.assets`` line's values."""

    def currency_values(
        self, account: str, label: str, currency: str, time_ms: int, values: Mapping[str, Any]
    ) -> None:
        """One ``unified.asset_detail`` line's values (one currency)."""


def _prefixes(names: Mapping[str, str]) -> dict[str, str]:
    return {short: escape_key(long) + "=" for short, long in names.items()}


_ASSETS_PREFIX: Final = _prefixes(schema.ASSETS_FIELDS)
_DETAIL_PREFIX: Final = _prefixes(schema.DETAIL_FIELDS)
_U: Final = "," + escape_key(schema.FIELD_U) + "="
_REFRESH: Final = "," + escape_key(schema.FIELD_REFRESH_TIME) + "="
_ONLY_U: Final = frozenset({schema.FIELD_U})
_ONLY_T: Final = frozenset({schema.FIELD_REFRESH_TIME})
_BOTH: Final = _ONLY_U | _ONLY_T
_NEITHER: Final = frozenset[str]()


def common_fields(result: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    """``,u=..i,refresh_time=..i`` for the integers the result carries, and their names."""
    u, t = result.get("u"), result.get("t")
    if type(u) is int:
        if type(t) is int:
            return f"{_U}{u}i{_REFRESH}{t}i", _BOTH
        return f"{_U}{u}i", _ONLY_U
    if type(t) is int:
        return f"{_REFRESH}{t}i", _ONLY_T
    return "", _NEITHER


def value_text(raw: Any) -> str | None:
    """A decimal string or JSON number as line-protocol float text, else None.

    The same text as ``Encoder`` writes for ``lineproto.number_field(raw)``.
    """
    kind = type(raw)
    if kind is str:
        return float_text(raw)
    if kind is int:
        raw = float(raw)
    elif kind is not float:
        return None
    if raw - raw != 0:  # NaN or infinity: InfluxDB cannot store it
        return None
    text = repr(raw)
    return text[:-2] if text[-2:] == ".0" else text


class Checked:
    """The slow path's outcome for one set of values: field text, the good values, bad count."""

    __slots__ = ("bad", "fields", "good")

    def __init__(
        self,
        values: Mapping[str, Any],
        names: Mapping[str, str],
        common: frozenset[str],
    ) -> None:
        by_name: dict[str, str] = {}  # long name -> text: a name given twice is written once
        self.good: dict[str, str] = {}
        self.bad = 0
        for key, raw in values.items():
            text = value_text(raw)
            if text is None:
                self.bad += 1
                continue
            self.good[key] = text
            name = names.get(key, key)
            if name not in common:  # the result's own u / refresh_time win, as integers
                by_name[name] = text
        self.fields = ",".join([escape_key(name) + "=" + text for name, text in by_name.items()])


def _fast_fields(values: Mapping[str, Any], prefixes: Mapping[str, str]) -> str | None:
    """Known keys with already checked strings: prefix and join; None for a new key."""
    try:
        return ",".join([prefixes[key] + value for key, value in values.items()])
    except KeyError:  # a key Gate added: the slow path escapes its name
        return None


def _strings_valid(values: Mapping[str, Any]) -> bool:
    """Every value a plain decimal string: one regex over the comma-joined values."""
    try:
        joined = ",".join(values.values())
    except TypeError:  # some value is not a string
        return False
    return joined.count(",") == len(values) - 1 and DECIMALS.fullmatch(joined) is not None


def _all_valid(dts: Mapping[str, Any]) -> bool:
    """Every currency a dict of plain decimal strings: one regex for the whole frame."""
    try:
        joined = ",".join([",".join(values.values()) for values in dts.values()])
        count = sum([len(values) for values in dts.values()])
    except (TypeError, AttributeError):  # a value that is not a string, or not a dict
        return False
    return joined.count(",") == count - 1 and DECIMALS.fullmatch(joined) is not None


class AccountLines:
    """One account's cached series keys; turns its results into lines."""

    def __init__(
        self,
        account: int,
        label: str,
        observer: Observer | None = None,
        max_currencies: int = DEFAULT_MAX_CURRENCIES,
        facts: AccountFacts | None = None,
    ) -> None:
        self.account, self.label = str(account), label
        # The account's mode and the unit of pushed rates: values Gate sent as 0 that
        # do not apply are left out, percent rates become ratios (book.py).
        self._facts = facts
        # One account sending thousands of new currencies must not poison the batch
        # (InfluxDB's max-values-per-tag) nor grow this cache without bound.
        self.max_currencies = max_currencies
        self._observer = observer
        self._tags = ((schema.TAG_ACCOUNT, self.account), (schema.TAG_ACCOUNT_LABEL, label))
        self._assets_series = series_key(schema.ASSETS, self._tags) + " "
        self._detail_series: dict[str, str] = {}

    def _detail_key(self, currency: str) -> str | None:
        """``currency``'s series key and space; None for a new one past the account's cap."""
        found = self._detail_series.get(currency)
        if found is None:
            if len(self._detail_series) >= self.max_currencies:
                return None
            tags = (*self._tags, (schema.TAG_CURRENCY, currency))
            found = self._detail_series[currency] = series_key(schema.ASSET_DETAIL, tags) + " "
        return found

    def assets(self, result: Mapping[str, Any], time_ms: int, lines: list[str]) -> int:
        """Append the assets line of ``result``; returns how many fields were bad."""
        values = {k: v for k, v in result.items() if k not in schema.ASSETS_SKIP}
        facts = self._facts
        if facts is not None and not facts.assets_keys().isdisjoint(values):
            values = facts.assets(values, time_ms)
        suffix, common = common_fields(result)
        fields = _fast_fields(values, _ASSETS_PREFIX) if _strings_valid(values) else None
        bad, good = 0, values
        if fields is None:
            checked = Checked(values, schema.ASSETS_FIELDS, common)
            fields, bad, good = checked.fields, checked.bad, checked.good
        if fields:
            lines.append(f"{self._assets_series}{fields}{suffix} {time_ms}")
            if self._observer is not None:
                self._observer.account_values(self.account, self.label, time_ms, good)
        return bad

    def detail(self, result: Mapping[str, Any], time_ms: int, lines: list[str]) -> tuple[int, int]:
        """Append one line per currency of ``result``; returns (bad fields, over the cap)."""
        dts = result.get("dts", {})
        if not isinstance(dts, dict):
            return 1, 0
        suffix, common = common_fields(result)
        ending = f"{suffix} {time_ms}"
        fast = _all_valid(dts)
        bad = over_cap = 0
        for currency, values in dts.items():
            if not isinstance(values, dict):
                bad += 1
                continue
            facts = self._facts
            if facts is not None and not facts.detail_keys(currency).isdisjoint(values):
                values = facts.detail(currency, values, time_ms)
            fields = _fast_fields(values, _DETAIL_PREFIX) if fast else None
            good = values
            if fields is None:
                checked = Checked(values, schema.DETAIL_FIELDS, common)
                fields, good = checked.fields, checked.good
                bad += checked.bad
            if not fields:
                continue
            key = self._detail_key(currency)
            if key is None:
                over_cap += 1
                continue
            lines.append(key + fields + ending)
            if self._observer is not None:
                self._observer.currency_values(self.account, self.label, currency, time_ms, good)
        return bad, over_cap
