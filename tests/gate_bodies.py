"""``GET /unified/accounts`` bodies built with Gate's official SDK models (``gate-api``).

Our own test data, replacing the REST example of ``shared/gate-vectors.md``
(whose 9999.99 rates and ``refresh_time`` were filled in by hand, and which has
no ``mode``). Each body is a ``gate_api.UnifiedAccount`` with its
``gate_api.UnifiedBalance`` per currency, every SDK field set, with the zeros the
SDK's field descriptions say Gate sends in that mode, serialised the way the
SDK itself sends models (``ApiClient.sanitize_for_serialization``).

The numbers are consistent: a rate is its margin balance over its margin, as a
plain ratio (Gate's own example, 16499.1356783634, is such a ratio with margin
in use: REST rates are not capped at 9999.99).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import gate_api

from collector.points import modes

GATE_EXAMPLE_RATE: Final = "16499.1356783634"
REFRESH_TIME: Final = 1_716_796_364  # a time Gate might call the "last refresh"


def sdk_json(model: Any) -> dict[str, Any]:
    """A model as the SDK would put it on the wire."""
    body: dict[str, Any] = gate_api.ApiClient().sanitize_for_serialization(model)
    return body


def _ratio(balance: str, margin: str) -> str:
    return format((Decimal(balance) / Decimal(margin)).quantize(Decimal("1e-10")), "f")


def balance(currency: str, mode: str, *, amount: str = "0.5", mm: str = "0") -> Any:
    """One ``UnifiedBalance`` with the zeros ``mode`` makes for ``currency``."""
    cross = mode in (modes.MULTI_CURRENCY, modes.PORTFOLIO)
    single_usdt = mode == modes.SINGLE_CURRENCY and currency == modes.SINGLE_CURRENCY_MARGIN
    margin_balance = amount if single_usdt else "0"
    if single_usdt and Decimal(mm) != 0:
        mmr, imr, im = (
            _ratio(amount, mm),
            _ratio(amount, str(Decimal(mm) * 2)),
            str(Decimal(mm) * 2),
        )
    else:
        mmr = imr = im = "0"
        mm = "0"
    return gate_api.UnifiedBalance(
        available=amount,
        freeze="0",
        borrowed="0.1" if cross else "0",
        negative_liab="0",
        futures_pos_liab="0",
        equity=amount,
        total_freeze="0",
        total_liab="0.1" if cross else "0",
        spot_in_use="0",
        funding="0",
        funding_version="4",
        cross_balance="0" if mode == modes.PORTFOLIO else amount,
        iso_balance="0",
        im=im,
        mm=mm,
        imr=imr,
        mmr=mmr,
        margin_balance=margin_balance,
        available_margin=margin_balance,
        enabled_collateral=True,
        balance_version=12.0,
    )


def account(
    mode: str,
    *,
    user_id: int = 10001,
    margin: str = "6.0618",
    usdt_mm: str = "0",
    margin_balance: str = "100016.1",
) -> Any:
    """One ``UnifiedAccount`` in ``mode`` (BTC and USDT balances).

    ``margin``: the account's maintenance margin (multi-currency/portfolio; "0" is
    no margin in use). ``usdt_mm``: USDT's maintenance margin (single-currency mode).
    """
    cross = mode in (modes.MULTI_CURRENCY, modes.PORTFOLIO)
    if cross and Decimal(margin) != 0:
        mmr = _ratio(margin_balance, margin)
        imr = _ratio(margin_balance, str(Decimal(margin) * 2))
        im = str(Decimal(margin) * 2)
    else:
        mmr = imr = im = "0"
        margin = "0"
    zero_unless_cross = (lambda value: value) if cross else (lambda value: "0")
    return gate_api.UnifiedAccount(
        mode=mode,
        user_id=user_id,
        refresh_time=REFRESH_TIME,
        locked=False,
        balances={
            "BTC": balance("BTC", mode),
            "USDT": balance("USDT", mode, amount="5000.12345678", mm=usdt_mm),
        },
        total=margin_balance,
        borrowed=zero_unless_cross("0.1"),
        total_initial_margin=zero_unless_cross(im),
        total_margin_balance=zero_unless_cross(margin_balance),
        total_maintenance_margin=zero_unless_cross(margin),
        total_initial_margin_rate=zero_unless_cross(imr),
        total_maintenance_margin_rate=zero_unless_cross(mmr),
        total_available_margin=zero_unless_cross(margin_balance),
        unified_account_total=margin_balance,
        unified_account_total_liab=zero_unless_cross("0.1"),
        unified_account_total_equity=margin_balance,
        leverage=zero_unless_cross("3"),
        spot_order_loss="0",
        options_order_loss="0",
        spot_hedge=False,
        use_funding=False,
        is_all_collateral=True,
    )


def body(mode: str, **kwargs: Any) -> dict[str, Any]:
    """:func:`account` as the JSON body Gate would answer."""
    return sdk_json(account(mode, **kwargs))
