"""The body of ``GET /unified/accounts``, typed (pure): Gate SDK's ``UnifiedAccount``.

Lenient where Gate is: a number may be a JSON number or a decimal string and is
kept as sent (:mod:`collector.points.snapshot` decides what is a valid value), an
id or a time is an int whatever its JSON type (else None), an unknown field is
kept, a missing one is None, a currency that is not an object is None. Strict
where bad input must be said: a body that is not a JSON object is a
:class:`~collector.gate.errors.BadResponseError` naming it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict

from collector.gate.errors import BadResponseError

PATH: Final = "/unified/accounts"
_CLASSIC_MODES: Final = frozenset({"classic"})
_INTEGER: Final = re.compile(r"-?[0-9]+")  # ASCII digits: what int() takes, no sign games


def as_int(value: object) -> int | None:
    """An int from an int, a whole float or a decimal string (types drift); else None."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is str and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return None


def _text(value: object) -> str | None:
    return value if type(value) is str else None


def _balances(value: object) -> dict[str, object]:
    """Each currency's object; a currency that is not an object is None (not data)."""
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, dict) else None for k, v in value.items()}


# A value as Gate sent it: a JSON number, a decimal string, a bool, or anything else.
Raw = Any
LenientInt = Annotated[int | None, BeforeValidator(as_int)]
LenientText = Annotated[str | None, BeforeValidator(_text)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    def values(self, skip: frozenset[str] = frozenset()) -> dict[str, Raw]:
        """The fields the body had (declared ones in Gate's order, then unknown ones), raw."""
        sent = self.model_fields_set
        return {name: value for name, value in self if name in sent and name not in skip}


class UnifiedBalance(_Body):
    """One currency of ``balances`` (Gate SDK's ``UnifiedBalance``)."""

    available: Raw = None
    freeze: Raw = None
    borrowed: Raw = None
    negative_liab: Raw = None
    futures_pos_liab: Raw = None
    equity: Raw = None
    total_freeze: Raw = None
    total_liab: Raw = None
    spot_in_use: Raw = None
    funding: Raw = None
    funding_version: Raw = None
    cross_balance: Raw = None
    iso_balance: Raw = None
    im: Raw = None
    mm: Raw = None
    imr: Raw = None
    mmr: Raw = None
    margin_balance: Raw = None
    available_margin: Raw = None
    enabled_collateral: Raw = None
    balance_version: Raw = None


# The account-level fields that describe the body, not values of the account.
_NOT_VALUES: Final = frozenset({"mode", "user_id", "refresh_time", "balances"})


class UnifiedAccount(_Body):
    """``GET /unified/accounts`` (Gate SDK's ``UnifiedAccount``)."""

    mode: LenientText = None
    user_id: LenientInt = None
    refresh_time: LenientInt = None
    locked: Raw = None
    balances: Annotated[dict[str, UnifiedBalance | None], BeforeValidator(_balances)] = {}
    total: Raw = None
    borrowed: Raw = None
    total_initial_margin: Raw = None
    total_margin_balance: Raw = None
    total_maintenance_margin: Raw = None
    total_initial_margin_rate: Raw = None
    total_maintenance_margin_rate: Raw = None
    total_available_margin: Raw = None
    unified_account_total: Raw = None
    unified_account_total_liab: Raw = None
    unified_account_total_equity: Raw = None
    leverage: Raw = None
    spot_order_loss: Raw = None
    options_order_loss: Raw = None
    spot_hedge: Raw = None
    use_funding: Raw = None
    is_all_collateral: Raw = None

    @classmethod
    def parse(cls, data: object) -> UnifiedAccount:
        """The body as Gate sent it; a BadResponseError naming it when it is no object."""
        if not isinstance(data, dict):
            raise BadResponseError(f"GET {PATH}: expected a JSON object, got {data!r:.100}")
        return cls.model_validate(data)

    def account_values(self) -> dict[str, Raw]:
        """The account-level values (every field but the mode, ids, times and balances)."""
        return self.values(_NOT_VALUES)

    @property
    def classic_mode(self) -> str | None:
        """The mode, lower-cased, when it (or ``margin_mode``) says the account is classic."""
        extra = self.model_extra or {}
        said = self.mode if "mode" in self.model_fields_set else extra.get("margin_mode")
        mode = said.lower() if isinstance(said, str) else None
        return mode if mode in _CLASSIC_MODES else None
