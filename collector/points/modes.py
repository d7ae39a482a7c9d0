"""Gate's account modes: which numbers mean anything in which mode (pure).

``GET /unified/accounts`` carries ``mode`` (Gate's SDK ``UnifiedAccount.mode``):
``classic`` (not unified), ``multi_currency``, ``portfolio``, ``single_currency``.
Many fields are documented as valid in some modes and "0 in other modes" (the
SDK's ``models/unified_account.py`` and ``models/unified_balance.py``, generated
from the same OpenAPI spec as Gate's API v4 document). Such a 0 is "does not
apply", never a value: it is not written, and counted. Until the mode is known,
a 0 in a field whose meaning depends on the mode is unknown, and not written
either. A non-zero value is written whatever the mode says (Gate sent a number).

Every name here is the stored (long) name of :mod:`collector.points.schema`;
the REST ``im mm imr mmr`` are the pushes' ``initial_margin`` ... already.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from collector.points import schema

CLASSIC: Final = "classic"
MULTI_CURRENCY: Final = "multi_currency"
PORTFOLIO: Final = "portfolio"
SINGLE_CURRENCY: Final = "single_currency"
UNIFIED_MODES: Final = frozenset({MULTI_CURRENCY, PORTFOLIO, SINGLE_CURRENCY})
MODES: Final = frozenset({CLASSIC, *UNIFIED_MODES})

# The one currency whose margin figures apply in single-currency margin mode.
SINGLE_CURRENCY_MARGIN: Final = "USDT"

_CROSS: Final = frozenset({MULTI_CURRENCY, PORTFOLIO})
_NOT_PORTFOLIO: Final = frozenset({MULTI_CURRENCY, SINGLE_CURRENCY})
_ONLY_PORTFOLIO: Final = frozenset({PORTFOLIO})
_ONLY_SINGLE: Final = frozenset({SINGLE_CURRENCY})

# Account level (UnifiedAccount): the modes in which each field applies.
ASSETS_APPLIES: Final[Mapping[str, frozenset[str]]] = {
    schema.INITIAL_MARGIN_RATE: _CROSS,
    schema.MAINTENANCE_MARGIN_RATE: _CROSS,
    schema.MARGIN_BALANCE: _CROSS,
    schema.AVAILABLE_MARGIN: _CROSS,
    schema.LIABILITIES: _CROSS,
    "borrowed": _CROSS,
    "total_initial_margin": _CROSS,
    "total_maintenance_margin": _CROSS,
    "leverage": _CROSS,
    "spot_order_loss": _CROSS,
    "options_order_loss": _ONLY_PORTFOLIO,
}
# Per currency (UnifiedBalance): the modes in which each field applies.
DETAIL_APPLIES: Final[Mapping[str, frozenset[str]]] = {
    "borrowed": _CROSS,
    "negative_liab": _CROSS,
    schema.DETAIL_LIABILITIES: _CROSS,
    "spot_in_use": _ONLY_PORTFOLIO,
    "cross_balance": _NOT_PORTFOLIO,
    "iso_balance": _NOT_PORTFOLIO,
}
# "only effective for USDT in single-currency margin mode, 0 in multi-currency/portfolio"
# (and the WebSocket's iso_available_margin, which the seed lists with them).
DETAIL_SINGLE_USDT: Final = frozenset(
    {
        "initial_margin",
        "maintenance_margin",
        schema.DETAIL_INITIAL_MARGIN_RATE,
        schema.DETAIL_MAINTENANCE_MARGIN_RATE,
        "margin_balance",
        "available_margin",
        "iso_available_margin",
    }
)

# Rates (ratios once stored, 1.0 = 100 %) and the margin each divides by: with no
# margin in use (that margin 0 where it applies) the rate is Gate's "no margin" value.
ASSETS_RATES: Final[Mapping[str, str]] = {
    schema.MAINTENANCE_MARGIN_RATE: "total_maintenance_margin",
    schema.INITIAL_MARGIN_RATE: "total_initial_margin",
}
DETAIL_RATES: Final[Mapping[str, str]] = {
    schema.DETAIL_MAINTENANCE_MARGIN_RATE: "maintenance_margin",
    schema.DETAIL_INITIAL_MARGIN_RATE: "initial_margin",
}


def known_mode(raw: object) -> str | None:
    """A body's ``mode`` as one of :data:`MODES`, else None (absent or new to us)."""
    if isinstance(raw, str) and raw.lower() in MODES:
        return raw.lower()
    return None


def assets_applies(mode: str | None, name: str) -> bool | None:
    """Whether account-level ``name`` applies in ``mode``; None while the mode is unknown.

    True for a field whose meaning does not depend on the mode.
    """
    modes = ASSETS_APPLIES.get(name)
    if modes is None:
        return True
    if mode is None:
        return None
    return mode in modes


def detail_applies(mode: str | None, name: str, currency: str) -> bool | None:
    """Whether per-currency ``name`` of ``currency`` applies in ``mode`` (None: unknown)."""
    if name in DETAIL_SINGLE_USDT:
        if currency != SINGLE_CURRENCY_MARGIN:
            return False  # whatever the mode: only USDT ever has them
        return None if mode is None else mode == SINGLE_CURRENCY
    modes = DETAIL_APPLIES.get(name)
    if modes is None:
        return True
    if mode is None:
        return None
    return mode in modes


def is_zero(raw: Any) -> bool:
    """A number (decimal text or JSON number) equal to 0; anything else is not."""
    if raw == "0" or raw == "0.00":  # Gate's usual spellings: no float() for them
        return True
    kind = type(raw)
    if kind is str:
        try:
            return float(raw) == 0.0
        except ValueError:
            return False
    return (kind is int or kind is float) and raw == 0


def effective_rate(
    mode: str | None, account_rate: float | None, usdt_rate: float | None
) -> float | None:
    """The account's margin rate that matters: account-level in multi-currency and
    portfolio mode, USDT's in single-currency mode, none for a classic account.

    While the mode is unknown, whichever is known: a rate that does not apply is
    0 and never kept, so a kept one comes from the mode it applies in.
    """
    if mode in _CROSS:
        return account_rate
    if mode == SINGLE_CURRENCY:
        return usdt_rate
    if mode is None:
        return account_rate if account_rate is not None else usdt_rate
    return None
