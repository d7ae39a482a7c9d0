"""What the unified WebSocket's pushes carry: the first ``u`` of a channel and Gate's
short field names. ``unified.assets`` values are cut (not rounded) to 2 decimals;
``unified.asset_detail`` values come at full precision (Gate's example: 6-8
decimals). Margin rates go out as ratios or in percent (``state.ws_rate_unit``),
capped at Gate's 9999.99, which is also the value with no margin in use."""

from __future__ import annotations

from typing import Final

from collector.devtools.simulator.state import SimSubAccount
from collector.points.schema import ASSETS_FIELDS, NO_MARGIN_RATE

FIRST_U: Final = 1000
PERCENT: Final = "percent"

_WS_ASSETS: Final = {long: short for short, long in ASSETS_FIELDS.items()}
_WS_DETAIL: Final = {"available": "a", "freeze": "f", "equity": "e", "total_liab": "tl"}
_RATES: Final = frozenset({"r", "R"})
# USDT's single-currency extras: REST name -> push key.
_WS_MARGIN: Final = {
    "cross_balance": "cb",
    "margin_balance": "mb",
    "im": "im",
    "mm": "mm",
    "imr": "imr",
    "mmr": "mmr",
    "available_margin": "am",
}


def truncate2(text: str) -> str:
    """A decimal string cut (not rounded) to 2 decimals, as Gate's pushes carry them."""
    whole, _, fraction = text.partition(".")
    return f"{whole}.{(fraction + '00')[:2]}"


def ws_rate(ratio_text: str, margin_text: str, unit: str) -> str:
    """A REST rate (a ratio) as the WebSocket sends it: in ``unit``, capped at 9999.99,
    and 9999.99 with no margin in use (its margin 0), as Gate's example shows."""
    if float(margin_text) == 0:
        return f"{NO_MARGIN_RATE:.2f}"
    value = float(ratio_text) * (100 if unit == PERCENT else 1)
    return f"{min(value, NO_MARGIN_RATE):.6f}"


def ws_assets(account: SimSubAccount, unit: str = "ratio") -> dict[str, str]:
    """A ``unified.assets`` push's values (rates in ``unit``)."""
    rest = account.rest_assets()
    values = {_WS_ASSETS[k]: truncate2(v) for k, v in account.assets().items()}
    if account.cross:
        for short, long, margin in (
            ("R", "total_maintenance_margin_rate", "total_maintenance_margin"),
            ("r", "total_initial_margin_rate", "total_initial_margin"),
        ):
            values[short] = truncate2(ws_rate(rest[long], rest[margin], unit))
    values["c"] = "0"  # deprecated; Gate still sends it
    return values


def ws_detail(account: SimSubAccount, index: int, unit: str = "ratio") -> dict[str, str]:
    """One currency of a ``unified.asset_detail`` push, at full precision."""
    balance = account.balance(index)
    values = {_WS_DETAIL[k]: v for k, v in balance.items()}
    values["b"] = balance["equity"]  # WS-only: no REST twin
    currency = account.currencies[index]
    if account.mode == "single_currency" and currency == "USDT":
        rest = account.rest_balance(index, currency)
        values.update({push: rest[name] for name, push in _WS_MARGIN.items()})
        values["imr"] = ws_rate(rest["imr"], rest["im"], unit)
        values["mmr"] = ws_rate(rest["mmr"], rest["mm"], unit)
        values["iam"] = rest["available_margin"]
    return values


def burst_detail(n: int, i: int) -> dict[str, str]:
    """Made-up detail values for the ``i``-th currency of a burst (benchmarks)."""
    base = 1000.0 * (i + 1) + n * 0.5
    return {
        "a": f"{base:.6f}",
        "f": f"{n % 3:.6f}",
        "e": f"{base + n % 3:.6f}",
        "tl": "0.00",
        "b": f"{base + n % 3:.6f}",
    }
