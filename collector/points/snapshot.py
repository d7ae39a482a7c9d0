"""A ``GET /unified/accounts`` body -> points, pure (DESIGN.md sections 2 and 4).

The same measurements and the same long names as the pushes, so ``last()`` is
the truth whichever way a value arrived: the REST names of the WebSocket's
``r R b e l T a`` are the long names already; ``balances: {CUR: {...}}`` become
one asset_detail point per currency, ``im mm imr mmr`` under the long names the
pushes use; REST-only numbers (``total``, ``borrowed``, ``leverage``, ...) under
their own names. Types drift: a number may come as a string or a JSON number.
A known field that is not a number is dropped and counted; an unknown field that
is not a number (``locked``, ``spot_hedge``, ``margin_mode``) is simply not data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from collector.points import schema
from collector.points.lineproto import FieldValue, Point, number_field

# Keys of the top level that are not values to write.
_ASSETS_SKIP: Final = frozenset({"user_id", "refresh_time", "balances"})
_KNOWN_ASSETS: Final = frozenset(schema.ASSETS_FIELDS.values()) | schema.SNAPSHOT_ASSETS_FIELDS
_KNOWN_DETAIL: Final = (
    frozenset(schema.DETAIL_FIELDS.values())
    | frozenset(schema.DETAIL_FIELDS)
    | schema.SNAPSHOT_DETAIL_FIELDS
)
# Seconds before this are not a refresh time (a refresh_time in ms is > 1e11).
_MS_THRESHOLD: Final = 100_000_000_000


@dataclass
class SnapshotPoints:
    """The points of one snapshot and what was wrong in it."""

    points: list[Point] = field(default_factory=list)
    invalid_fields: int = 0
    user_id: int | None = None


def _int(value: Any) -> int | None:
    """An int from an int, a float or a decimal string (types drift)."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is str and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def snapshot_time_ms(body: dict[str, Any], taken_ms: int) -> int:
    """The snapshot's ``refresh_time`` (s, or ms when it looks like ms), else when taken."""
    refresh = _int(body.get("refresh_time"))
    if refresh is None or refresh <= 0:
        return taken_ms
    return refresh if refresh >= _MS_THRESHOLD else refresh * 1000


def snapshot_points(
    account: int, label: str, body: dict[str, Any], taken_ms: int
) -> SnapshotPoints:
    """The assets point and one asset_detail point per currency of one snapshot."""
    out = SnapshotPoints(user_id=_int(body.get("user_id")))
    time_ms = snapshot_time_ms(body, taken_ms)
    account_tags = ((schema.TAG_ACCOUNT, str(account)), (schema.TAG_ACCOUNT_LABEL, label))
    common: dict[str, FieldValue] = {}
    refresh = _int(body.get("refresh_time"))
    if refresh is not None:
        common[schema.FIELD_REFRESH_TIME] = refresh
    values = {k: v for k, v in body.items() if k not in _ASSETS_SKIP}
    fields = _fields(values, {}, _KNOWN_ASSETS, out)
    if fields:
        out.points.append(Point(schema.ASSETS, account_tags, {**fields, **common}, time_ms))
    balances = body.get("balances")
    if isinstance(balances, dict):
        for currency, raw in balances.items():
            if not isinstance(raw, dict):
                out.invalid_fields += 1
                continue
            fields = _fields(raw, schema.DETAIL_FIELDS, _KNOWN_DETAIL, out)
            if fields:
                tags = (*account_tags, (schema.TAG_CURRENCY, str(currency)))
                out.points.append(Point(schema.ASSET_DETAIL, tags, {**fields, **common}, time_ms))
    return out


def _fields(
    values: dict[str, Any], names: dict[str, str], known: frozenset[str], out: SnapshotPoints
) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    for key, raw in values.items():
        number = number_field(raw)
        if number is None:
            if key in known:
                out.invalid_fields += 1
            continue
        fields[names.get(key, key)] = number
    return fields
