"""The unit of the WebSocket's margin rates, ratio or percent, decided once (pure).

REST rates are plain ratios (margin balance / maintenance margin: Gate's example
16499.1356783634 is that, digit for digit). Gate's current unified WebSocket
document calls ``r``, ``R``, ``imr``, ``mmr`` "(unit: %)"; the seed only says
"refer to the http interface". ``gate.ws_rate_unit`` says which: ``ratio``,
``percent``, or ``auto`` (the default), which decides from evidence: a push's rate
and a REST snapshot's rate of the same field of the same account, read within
:data:`WINDOW_MS` of each other. Their quotient is about 1 in a ratio world and
about 100 in a percent world; anything else (the rate moved a lot in between) is
no evidence, and the next pair is tried. Until then no WebSocket rate is written
(the snapshots' rates are). The decision is announced once, with its evidence.

With a fixed setting the same evidence is still looked at once: a pair that
contradicts the setting is announced as a mismatch (the setting stays in force).

Gate's "no margin in use" value 9999.99 is not evidence (it is the same in either
unit), nor is a 0, nor a REST rate at or above 9999.99 (the pushes cap there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from collector.points import schema

AUTO: Final = "auto"
RATIO: Final = "ratio"
PERCENT: Final = "percent"
UnitSetting = Literal["auto", "ratio", "percent"]
DIVISORS: Final = {RATIO: 1, PERCENT: 100}
# A push and a snapshot this close in time describe the same state closely enough.
WINDOW_MS: Final = 60_000
# |log10(ws / rest) - log10(divisor)| within this: 10**0.5 ~ a factor of 3 either way.
TOLERANCE: Final = 0.5

Field = tuple[str, str]  # (currency, stored name); currency "" for account-level rates


@dataclass(frozen=True)
class Evidence:
    """The pair a decision rests on."""

    unit: str
    account: int
    field: str  # e.g. "total_maintenance_margin_rate" or "USDT maintenance_margin_rate"
    ws_value: float
    rest_value: float
    ws_time_ms: int
    rest_time_ms: int

    @property
    def quotient(self) -> float:
        """ws / rest: ~1 for ratio, ~100 for percent."""
        return self.ws_value / self.rest_value

    def as_dict(self) -> dict[str, object]:
        """For logs and ``/status``."""
        return {
            "unit": self.unit,
            "account": self.account,
            "field": self.field,
            "ws_value": self.ws_value,
            "rest_value": self.rest_value,
            "ws_over_rest": round(self.quotient, 4),
            "seconds_apart": abs(self.ws_time_ms - self.rest_time_ms) / 1000,
        }


def _usable(value: float) -> bool:
    return value > 0 and math.isfinite(value) and value < schema.NO_MARGIN_RATE


def judge(ws_value: float, rest_value: float) -> str | None:
    """``ratio``, ``percent`` or None (no evidence) for one pair of the same rate."""
    if not (_usable(ws_value) and _usable(rest_value)):
        return None
    distance = math.log10(ws_value / rest_value)
    for unit, divisor in DIVISORS.items():
        if abs(distance - math.log10(divisor)) <= TOLERANCE:
            return unit
    return None


class RateUnit:
    """What the WebSocket's rates are divided by, once known; collects evidence until then.

    ``announce`` is called once: with the evidence of the decision (``auto``), or
    with the evidence of a mismatch (a fixed setting that the evidence contradicts).
    """

    def __init__(
        self,
        setting: UnitSetting = AUTO,
        announce: Callable[[Evidence, str], None] | None = None,
    ) -> None:
        self.setting = setting
        self.divisor: int | None = DIVISORS.get(setting)
        self.evidence: Evidence | None = None  # the pair that was judged
        self.mismatch = False
        self._announce = announce
        self._ws: dict[tuple[int, Field], tuple[float, int]] = {}
        self._rest: dict[tuple[int, Field], tuple[float, int]] = {}

    @property
    def unit(self) -> str | None:
        """``ratio`` / ``percent``, None while undecided."""
        if self.divisor is None:
            return None
        return RATIO if self.divisor == 1 else PERCENT

    @property
    def looking(self) -> bool:
        """Still collecting evidence (cheap to ask on every push)."""
        return self.evidence is None

    def ws_rate(self, account: int, field: Field, value: float, time_ms: int) -> None:
        """A pushed rate, as sent (before any scaling)."""
        if self.evidence is None and _usable(value):
            key = (account, field)
            self._ws[key] = (value, time_ms)
            rest = self._rest.get(key)
            if rest is not None:
                self._compare(account, field, (value, time_ms), rest)

    def rest_rate(self, account: int, field: Field, value: float, time_ms: int) -> None:
        """A snapshot's rate (a ratio)."""
        if self.evidence is None and _usable(value):
            key = (account, field)
            self._rest[key] = (value, time_ms)
            ws = self._ws.get(key)
            if ws is not None:
                self._compare(account, field, ws, (value, time_ms))

    def forget(self, account: int) -> None:
        """Drop what is kept of an account that left."""
        for table in (self._ws, self._rest):
            for key in [k for k in table if k[0] == account]:
                del table[key]

    def _compare(
        self, account: int, field: Field, ws: tuple[float, int], rest: tuple[float, int]
    ) -> None:
        if abs(ws[1] - rest[1]) > WINDOW_MS:
            return
        unit = judge(ws[0], rest[0])
        if unit is None:
            return
        currency, name = field
        self.evidence = Evidence(
            unit, account, f"{currency} {name}".strip(), ws[0], rest[0], ws[1], rest[1]
        )
        self._ws.clear()
        self._rest.clear()
        if self.divisor is None:
            self.divisor = DIVISORS[unit]
            outcome = "decided"
        elif self.divisor == DIVISORS[unit]:
            outcome = "confirmed"
        else:
            self.mismatch = True
            outcome = "mismatch"
        if self._announce is not None:
            self._announce(self.evidence, outcome)

    def describe(self) -> dict[str, object]:
        """For ``/status``: the setting, the unit in force and what it rests on."""
        return {
            "setting": self.setting,
            "unit": self.unit,
            "mismatch": self.mismatch,
            "evidence": None if self.evidence is None else self.evidence.as_dict(),
        }
