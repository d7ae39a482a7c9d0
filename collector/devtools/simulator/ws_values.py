"""What the unified WebSocket's pushes carry: the first ``u`` of a channel and
Gate's short field names with values cut (not rounded) to 2 decimals."""

from __future__ import annotations

from typing import Final

from collector.devtools.simulator.state import SimSubAccount
from collector.points.schema import ASSETS_FIELDS

FIRST_U: Final = 1000

_WS_ASSETS: Final = {long: short for short, long in ASSETS_FIELDS.items()}
_WS_DETAIL: Final = {"available": "a", "freeze": "f", "equity": "e", "total_liab": "tl"}


def truncate2(text: str) -> str:
    """A decimal string cut (not rounded) to 2 decimals, as Gate's pushes carry them."""
    whole, _, fraction = text.partition(".")
    return f"{whole}.{(fraction + '00')[:2]}"


def ws_assets(account: SimSubAccount) -> dict[str, str]:
    values = {_WS_ASSETS[k]: truncate2(v) for k, v in account.assets().items()}
    values["c"] = "0"  # deprecated; Gate still sends it
    return values


def ws_detail(account: SimSubAccount, index: int) -> dict[str, str]:
    balance = account.balance(index)
    values = {_WS_DETAIL[k]: truncate2(v) for k, v in balance.items()}
    values["b"] = truncate2(balance["equity"])  # WS-only: no REST twin
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
