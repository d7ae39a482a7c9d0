"""Points and their InfluxDB line protocol encoding (the hot path).

The encoding matches ``influxdb_client.Point.to_line_protocol()`` (proved by a
property test): the same escaping of measurement, tag keys and values, field
keys and string values; tags sorted by key; floats without a trailing ``.0``;
integers with ``i``; non-finite floats left out. Fields keep their given order
(InfluxDB does not care), which saves a sort per point.

Speed comes from caching the escaped series key (measurement plus tags) and the
escaped field keys: a collector writes the same few thousand series over and
over.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple, cast


class FloatText(str):
    """A float field already in line-protocol form: Gate's decimal string, validated.

    Gate sends balances as decimal strings; writing that text as it came is exact
    (no binary rounding) and saves a float-to-text conversion per field, the most
    expensive step of encoding. Make one only with :func:`float_text`.
    """

    __slots__ = ()


FieldValue = float | int | str | bool

# Possessive quantifiers (``++``, ``?+``): a decimal never needs backtracking, and
# not recording it makes the check of a whole frame's values about twice as fast.
_NUMBER: Final = r"-?[0-9]++(?:\.[0-9]++)?+(?:[eE][-+]?[0-9]{1,2})?+"
_DECIMAL: Final = re.compile(_NUMBER)
# Several decimals joined by commas: one regex call checks a whole frame's values.
DECIMALS: Final = re.compile(f"{_NUMBER}(?:,{_NUMBER})*+")


def float_text(text: str) -> FloatText | None:
    """``text`` as a FloatText when it is a plain finite decimal number, else None."""
    return FloatText(text) if _DECIMAL.fullmatch(text) else None


def number_field(value: Any) -> FieldValue | None:
    """A decimal string or JSON number from Gate -> a writable float field, else None."""
    kind = type(value)
    if kind is str:
        return float_text(value)
    if kind is float:
        return value if value - value == 0 else None
    if kind is int:
        return float(value)
    return None


_ESCAPE_MEASUREMENT: Final = str.maketrans(
    {",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESCAPE_KEY: Final = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESCAPE_STRING: Final = str.maketrans({'"': r"\"", "\\": r"\\"})
CACHE_LIMIT: Final = 200_000


class Point(NamedTuple):
    """One InfluxDB point; ``tags`` are (key, value) pairs, ``time_ms`` in milliseconds."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: Mapping[str, FieldValue]
    time_ms: int


Record = Point | str
"""One item for the sink: a point, or a line the hot path already encoded."""
Bundle = Sequence[Record]
"""What goes down the channel to the sink as one item: one update's (or report's) records."""


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    return name.translate(_ESCAPE_MEASUREMENT)


def escape_key(key: str) -> str:
    """Escape a tag key, tag value or field key."""
    return key.translate(_ESCAPE_KEY)


def _escape_tag_value(value: str) -> str:
    escaped = value.translate(_ESCAPE_KEY)
    # A trailing backslash would escape the space that ends the tag set.
    return escaped + " " if escaped.endswith("\\") else escaped


def series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """``measurement,tag=value,...`` escaped, tags sorted, empty tags left out."""
    parts = [escape_measurement(measurement)]
    for key, value in sorted(tags):
        k, v = escape_key(key), _escape_tag_value(value)
        if k and v:
            parts.append(f"{k}={v}")
    return ",".join(parts)


class Encoder:
    """Encodes points to lines, caching escaped series and field keys."""

    def __init__(self, cache_limit: int = CACHE_LIMIT) -> None:
        self._limit = cache_limit  # each cache is cleared when it reaches this many entries
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._keys: dict[str, str] = {}

    @property
    def cached(self) -> tuple[int, int]:
        """How many escaped series keys and field keys the caches hold."""
        return len(self._series), len(self._keys)

    def _series_key(self, point: Point) -> str:
        cache_key = (point.measurement, point.tags)
        found = self._series.get(cache_key)
        if found is None:
            if len(self._series) >= self._limit:
                self._series.clear()
            found = self._series[cache_key] = series_key(point.measurement, point.tags)
        return found

    def _field_prefix(self, key: str) -> str:
        """``key=`` escaped, cached."""
        found = self._keys.get(key)
        if found is None:
            if len(self._keys) >= self._limit:
                self._keys.clear()
            found = self._keys[key] = key.translate(_ESCAPE_KEY) + "="
        return found

    def encode(self, point: Record) -> str | None:
        """The line for ``point`` (ms precision), or None when no field is writable.

        A ``str`` is a line :mod:`collector.points.direct` already wrote: as it is.
        """
        if isinstance(point, str):
            return point
        parts: list[str] = []
        append = parts.append
        prefixes = self._keys
        for key, value in point.fields.items():
            prefix = prefixes.get(key) or self._field_prefix(key)
            kind = type(value)
            # Exact type checks (not isinstance) are the fast path; casts are for mypy.
            if kind is FloatText:
                append(prefix + cast(str, value))
            elif kind is float:
                number = cast(float, value)
                if number - number != 0:  # NaN or infinity: InfluxDB cannot store it
                    continue
                text = repr(number)
                if text[-2:] == ".0":
                    text = text[:-2]
                append(prefix + text)
            elif kind is int:
                append(f"{prefix}{value}i")
            elif kind is bool:
                append(prefix + ("true" if value else "false"))
            elif kind is str:
                append(f'{prefix}"{cast(str, value).translate(_ESCAPE_STRING)}"')
            else:
                raise TypeError(f"field {key!r} has unsupported type {kind.__name__}")
        if not parts:
            return None
        return f"{self._series_key(point)} {','.join(parts)} {point.time_ms}"


_DEFAULT: Final = Encoder()


def encode(point: Record) -> str | None:
    """Encode one point with the shared encoder."""
    return _DEFAULT.encode(point)
