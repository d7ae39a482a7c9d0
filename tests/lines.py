"""Lines back to points: how tests look at what the hot path writes."""

from __future__ import annotations

from collections.abc import Iterable

from collector.points.lineproto import FieldValue, FloatText, Point, Record
from collector.points.normalize import Normalized


def _split(text: str, sep: str, quotes: bool = True) -> list[str]:
    """Split on ``sep`` outside backslash escapes and (with ``quotes``) string values.

    A double quote opens a string only right after ``=`` (a field's value): in keys,
    and anywhere in the series (measurement and tags), it is a plain character.
    """
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if quotes and char == '"' and (quoted or (i > 0 and text[i - 1] == "=")):
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _value(text: str) -> FieldValue:
    if text.endswith("i"):
        return int(text[:-1])
    if text in ("true", "false"):
        return text == "true"
    if text.startswith('"'):
        return _unescape(text[1:-1])
    return FloatText(text)  # floats stay the text that was written


def parse_line(line: str) -> Point:
    """One line (ms precision) as a Point; float fields as their FloatText."""
    series = _split(line, " ", quotes=False)[0]
    fields, stamp = line[len(series) + 1 :].rsplit(" ", 1)
    measurement, *tags = _split(series, ",", quotes=False)
    pairs = tuple(
        (_unescape(key), _unescape(value))
        for key, value in (_split(tag, "=", quotes=False) for tag in tags)
    )
    values = {
        _unescape(key): _value(value)
        for key, value in (_split(field, "=") for field in _split(fields, ","))
    }
    return Point(_unescape(measurement), pairs, values, int(stamp))


def as_points(records: Iterable[Record]) -> list[Point]:
    """Records as points: lines parsed back, points as they are."""
    return [parse_line(r) if isinstance(r, str) else r for r in records]


def points_of(out: Normalized) -> list[Point]:
    """What a normalised update hands to the sink, as points (gap points first)."""
    return as_points(out.records())
