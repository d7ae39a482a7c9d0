"""A ``GET /unified/accounts`` body -> points, pure (DESIGN.md sections 2 and 4).

The body comes parsed (:class:`collector.gate.unified.UnifiedAccount`): its ids,
times, mode and balances typed, every value as Gate sent it.

The same measurements and the same long names as the pushes, so ``last()`` is
the truth whichever way a value arrived: the REST names of the WebSocket's
``r R b e l T a`` are the long names already; ``balances: {CUR: {...}}`` become
one asset_detail point per currency, ``im mm imr mmr`` under the long names the
pushes use; REST-only numbers (``total``, ``borrowed``, ``leverage``, ...) under
their own names. Types drift: a number may come as a string or a JSON number.
A known field that is not a number is dropped and counted; an unknown field that
is not a number (``locked``, ``spot_hedge``, ``enabled_collateral``) is simply
not data; the version counters (``funding_version``, ``balance_version``) are
not written (:data:`collector.points.schema.SNAPSHOT_NOT_WRITTEN`).

The body's ``mode`` decides what a 0 means (:mod:`collector.points.modes`): a 0
in a field that does not apply in that mode is not written (counted, and named
in ``not_applicable``); without a mode such a 0 is unknown and not written. A
rate whose margin is 0 is Gate's "no margin in use" value, 9999.99, whatever the
body puts there. REST rates are ratios already.

The points are stamped ``time_ms``: when the snapshot was read, on Gate's clock
(the caller's choice, :meth:`collector.points.book.AccountBook.snapshot_time`).
``refresh_time`` is written as a field only: Gate does not say what it means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from collector.gate.unified import UnifiedAccount
from collector.points import modes, schema
from collector.points.lineproto import FieldValue, Point, number_field

_KNOWN_ASSETS: Final = frozenset(schema.ASSETS_FIELDS.values()) | schema.SNAPSHOT_ASSETS_FIELDS
_KNOWN_DETAIL: Final = (
    frozenset(schema.DETAIL_FIELDS.values())
    | frozenset(schema.DETAIL_FIELDS)
    | schema.SNAPSHOT_DETAIL_FIELDS
)

Rate = tuple[tuple[str, str], float]  # ((currency or "", stored name), ratio)


@dataclass
class SnapshotPoints:
    """The points of one snapshot and what was wrong or left out in it."""

    points: list[Point] = field(default_factory=list)
    invalid_fields: int = 0
    user_id: int | None = None
    mode: str | None = None  # the body's mode, when it is one Gate documents
    not_applicable: set[str] = field(default_factory=set)  # names sent as 0, not applying
    values_not_applicable: int = 0
    values_mode_unknown: int = 0
    rates: list[Rate] = field(default_factory=list)  # the rates written (unit evidence)


def snapshot_points(account: int, label: str, body: UnifiedAccount, time_ms: int) -> SnapshotPoints:
    """The assets point and one asset_detail point per currency of one snapshot."""
    out = SnapshotPoints(user_id=body.user_id, mode=modes.known_mode(body.mode))
    account_tags = ((schema.TAG_ACCOUNT, str(account)), (schema.TAG_ACCOUNT_LABEL, label))
    common: dict[str, FieldValue] = {}
    if body.refresh_time is not None:
        common[schema.FIELD_REFRESH_TIME] = body.refresh_time
    fields = _fields(body.account_values(), "", out)
    if fields:
        out.points.append(Point(schema.ASSETS, account_tags, {**fields, **common}, time_ms))
    for currency, balance in body.balances.items():
        if balance is None:  # not an object
            out.invalid_fields += 1
            continue
        fields = _fields(balance.values(), currency, out)
        if fields:
            tags = (*account_tags, (schema.TAG_CURRENCY, currency))
            out.points.append(Point(schema.ASSET_DETAIL, tags, {**fields, **common}, time_ms))
    return out


def _fields(values: dict[str, Any], currency: str, out: SnapshotPoints) -> dict[str, FieldValue]:
    """One object's writable fields; ``currency`` "" for the account level."""
    detail = bool(currency)
    names = schema.DETAIL_FIELDS if detail else {}
    known = _KNOWN_DETAIL if detail else _KNOWN_ASSETS
    rates = modes.DETAIL_RATES if detail else modes.ASSETS_RATES
    fields: dict[str, FieldValue] = {}
    for key, raw in values.items():
        if key in schema.SNAPSHOT_NOT_WRITTEN:
            continue
        number = number_field(raw)
        if number is None:
            if key in known:
                out.invalid_fields += 1
            continue
        name = names.get(key, key)
        if detail:
            applies = modes.detail_applies(out.mode, name, currency)
        else:
            applies = modes.assets_applies(out.mode, name)
        if applies is not True and modes.is_zero(raw):
            if applies is None:
                out.values_mode_unknown += 1
            else:
                out.values_not_applicable += 1
                out.not_applicable.add(name)
            continue
        margin_name = rates.get(name)
        if margin_name is not None:
            if modes.is_zero(_margin(values, margin_name)):
                number = schema.NO_MARGIN_RATE
            else:
                ratio = float(number)
                if ratio != schema.NO_MARGIN_RATE:
                    out.rates.append(((currency, name), ratio))
        fields[name] = number
    return fields


def _margin(values: dict[str, Any], name: str) -> Any:
    """The margin a rate divides by, under its REST name (``mm``) or the stored one."""
    for key, long in schema.DETAIL_FIELDS.items():
        if long == name:
            return values.get(key, values.get(name))
    return values.get(name)
