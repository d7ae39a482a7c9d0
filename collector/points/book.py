"""What the collector knows about each account's numbers, shared by pushes and snapshots (pure).

One :class:`AccountBook` per process: the sessions' normalizers, the snapshot
scheduler, the totals and ``/status`` all read and feed the same one.

* The account's **mode** (its REST snapshots say it): a pushed value Gate sent
  as 0 because it does not apply in that mode is not written, and counted
  (:mod:`collector.points.modes`); before the mode is known, such a 0 is unknown
  and not written either.
* The **unit** of pushed rates (:class:`collector.points.units.RateUnit`): a
  percent is divided by 100 before it is written, as exact decimal text; nothing
  is written while ``auto`` has not decided. Gate's "no margin in use" value
  9999.99 passes unscaled, and so does a rate whose margin is 0 (as that value).
* The newest **push time** of the account, so a snapshot is stamped after every
  push already written (:meth:`AccountBook.snapshot_time`): a snapshot never lands
  on a push's timestamp, where InfluxDB would let it overwrite the push's values.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Final

from collector.points import modes, schema
from collector.points.units import RATIO, RateUnit

# A push newer than a snapshot's read time by more than this is not believed (a
# clock far off): the snapshot keeps its own read time.
MAX_PUSH_AHEAD_MS: Final = 60_000

_ASSETS_WATCH: Final = tuple(
    (short, long)
    for short, long in schema.ASSETS_FIELDS.items()
    if long in modes.ASSETS_APPLIES or long in modes.ASSETS_RATES
)
_DETAIL_WATCH: Final = tuple(
    (short, long)
    for short, long in schema.DETAIL_FIELDS.items()
    if long in modes.DETAIL_APPLIES
    or long in modes.DETAIL_SINGLE_USDT
    or long in modes.DETAIL_RATES
)


@cache
def assets_attention(mode: str | None, rates: bool) -> frozenset[str]:
    """The push keys of ``unified.assets`` that need a look in ``mode``: those whose 0
    does not apply or is unknown, and the rates when they must be scaled or looked at."""
    return frozenset(
        short
        for short, long in _ASSETS_WATCH
        if modes.assets_applies(mode, long) is not True or (rates and long in modes.ASSETS_RATES)
    )


@cache
def detail_attention(mode: str | None, currency: str) -> frozenset[str]:
    """The push keys of one ``unified.asset_detail`` currency that need a look in ``mode``
    (a rate always: its margin may be 0, which makes it Gate's no-margin value)."""
    return frozenset(
        short
        for short, long in _DETAIL_WATCH
        if modes.detail_applies(mode, long, currency) is not True or long in modes.DETAIL_RATES
    )


_SHORT_OF_DETAIL: Final = {long: short for short, long in schema.DETAIL_FIELDS.items()}
# detail rate short key -> the short key of the margin it divides by (imr -> im, mmr -> mm)
_DETAIL_MARGIN: Final = {
    _SHORT_OF_DETAIL[rate]: _SHORT_OF_DETAIL[margin] for rate, margin in modes.DETAIL_RATES.items()
}


def as_float(raw: Any) -> float | None:
    """A decimal string or JSON number as a float; None for anything else."""
    kind = type(raw)
    if kind is float or kind is int:
        return float(raw)
    if kind is str:
        try:
            return float(raw)
        except ValueError:
            return None
    return None


def percent_to_ratio(raw: Any) -> Any:
    """``"20.10"`` (percent) -> ``"0.2010"`` (ratio), exact; a JSON number divided by 100."""
    if type(raw) is str:
        try:
            return format(Decimal(raw).scaleb(-2), "f")
        except InvalidOperation:
            return raw  # not a number: the line's own check drops and counts it
    if type(raw) in (int, float):
        return raw / 100
    return raw


class AccountFacts:
    """One account's mode, newest push time and the fields Gate reported as not applicable."""

    __slots__ = ("account", "book", "last_push_ms", "mode", "not_applicable")

    def __init__(self, account: int, book: AccountBook) -> None:
        self.account = account
        self.book = book
        self.mode: str | None = None
        self.last_push_ms: int | None = None
        self.not_applicable: set[str] = set()  # stored names Gate sent as 0, not applying

    def assets_keys(self) -> frozenset[str]:
        """The keys of a ``unified.assets`` push that :meth:`assets` must look at."""
        unit = self.book.unit
        return assets_attention(self.mode, unit.divisor != 1 or unit.evidence is None)

    def detail_keys(self, currency: str) -> frozenset[str]:
        """The keys of one currency of a detail push that :meth:`detail` must look at."""
        if currency != modes.SINGLE_CURRENCY_MARGIN:
            currency = ""  # one cache entry for every other currency: the rules are the same
        return detail_attention(self.mode, currency)

    def pushed(self, time_ms: int) -> None:
        """A push stamped ``time_ms`` is being written."""
        last = self.last_push_ms
        self.last_push_ms = time_ms if last is None else max(last, time_ms)

    def zero_dropped(self, applies: bool | None, name: str) -> None:
        """Count a 0 that is not written: not applicable (``False``) or mode unknown."""
        if applies is None:
            self.book.values_mode_unknown += 1
        else:
            self.book.values_not_applicable += 1
            self.not_applicable.add(name)

    # -- pushes: Gate short keys ------------------------------------------------------

    def assets(self, values: dict[str, Any], time_ms: int) -> dict[str, Any]:
        """A ``unified.assets`` push's values as they may be written (a new dict)."""
        out = dict(values)
        mode = self.mode
        for short, long in _ASSETS_WATCH:
            if short not in out:
                continue
            raw = out[short]
            applies = modes.assets_applies(mode, long)
            if applies is not True and modes.is_zero(raw):
                del out[short]
                self.zero_dropped(applies, long)
            elif long in modes.ASSETS_RATES:
                self._rate(out, short, ("", long), time_ms, None)
        return out

    def detail(self, currency: str, values: dict[str, Any], time_ms: int) -> dict[str, Any]:
        """One currency of a ``unified.asset_detail`` push, as it may be written (a new dict)."""
        out = dict(values)
        mode = self.mode
        for short, long in _DETAIL_WATCH:
            if short not in out:
                continue
            raw = out[short]
            applies = modes.detail_applies(mode, long, currency)
            if applies is not True and modes.is_zero(raw):
                del out[short]
                self.zero_dropped(applies, long)
            elif long in modes.DETAIL_RATES:
                margin = values.get(_DETAIL_MARGIN[short])
                self._rate(out, short, (currency, long), time_ms, margin)
        return out

    def _rate(
        self, out: dict[str, Any], short: str, field: tuple[str, str], time_ms: int, margin: Any
    ) -> None:
        """A pushed rate as a ratio, Gate's no-margin value, or withheld (unit unknown)."""
        raw = out[short]
        value = as_float(raw)
        if value is None or value == schema.NO_MARGIN_RATE:
            return  # not a number (counted by the line's check), or the unit-free value
        if margin is not None and modes.is_zero(margin):
            out[short] = schema.NO_MARGIN_TEXT  # no margin in use, whatever the rate says
            return
        unit = self.book.unit
        if unit.looking:
            unit.ws_rate(self.account, field, value, time_ms)
        divisor = unit.divisor
        if divisor is None:
            del out[short]
            self.book.ws_rates_withheld += 1
        elif divisor != 1:
            out[short] = percent_to_ratio(raw)


class AccountBook:
    """Every account's facts, the unit of pushed rates and the counts of what was not written."""

    def __init__(self, unit: RateUnit | None = None) -> None:
        self.unit = unit if unit is not None else RateUnit(RATIO)
        self._facts: dict[int, AccountFacts] = {}
        self.values_not_applicable = 0
        self.values_mode_unknown = 0
        self.ws_rates_withheld = 0

    def facts(self, account: int) -> AccountFacts:
        """The account's facts (made on first use; shared by all its sessions)."""
        found = self._facts.get(account)
        if found is None:
            found = self._facts[account] = AccountFacts(account, self)
        return found

    def known(self, account: int) -> AccountFacts | None:
        """The account's facts if any were recorded."""
        return self._facts.get(account)

    def mode(self, account: int) -> str | None:
        """The account's mode, None while unknown."""
        found = self._facts.get(account)
        return None if found is None else found.mode

    def set_mode(self, account: int, mode: str | None) -> None:
        """What a snapshot said (None: it did not say, the known mode stays)."""
        if mode is not None:
            facts = self.facts(account)
            if facts.mode != mode:
                facts.mode = mode
                facts.not_applicable.clear()

    def snapshot_time(self, account: int, read_ms: int) -> int:
        """The timestamp of a snapshot read at ``read_ms`` (Gate's clock): after every
        push of the account already written, so it never lands on one."""
        found = self._facts.get(account)
        last = None if found is None else found.last_push_ms
        if last is not None and read_ms <= last <= read_ms + MAX_PUSH_AHEAD_MS:
            return last + 1
        return read_ms

    def retain(self, accounts: set[int]) -> None:
        """Forget accounts that left this instance."""
        for account in [a for a in self._facts if a not in accounts]:
            del self._facts[account]
            self.unit.forget(account)

    def stats(self) -> dict[str, int]:
        """The book's share of ``collector_stats``."""
        return {
            schema.STAT_VALUES_NOT_APPLICABLE: self.values_not_applicable,
            schema.STAT_VALUES_MODE_UNKNOWN: self.values_mode_unknown,
            schema.STAT_WS_RATES_WITHHELD: self.ws_rates_withheld,
            schema.STAT_WS_RATE_DIVISOR: self.unit.divisor or 0,
        }
