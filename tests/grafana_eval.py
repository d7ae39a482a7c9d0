"""Run dashboard and alert queries the way Grafana would, against a real InfluxDB."""

from __future__ import annotations

import math
import re
from typing import Any

from tests.servers import InfluxServer

# Grafana's interval rounding (kbn.roundInterval), the steps a 1 h .. 24 h range meets.
_NICE = [(1.5, 1), (3.5, 2), (7.5, 5), (12.5, 10), (17.5, 15), (25, 20), (45, 30), (90, 60)]
_NICE += [(210, 120), (450, 300), (750, 600), (1050, 900), (1500, 1200), (2700, 1800)]
MAX_DATA_POINTS = 1000


def grafana_interval(range_s: float, min_interval: str = "") -> int:
    """``$__interval`` in seconds for a panel ``MAX_DATA_POINTS`` wide."""
    raw = range_s / MAX_DATA_POINTS
    seconds = next((nice for limit, nice in _NICE if raw < limit), 3600)
    if min_interval:
        seconds = max(seconds, duration(min_interval))
    return seconds


def duration(text: str) -> int:
    """``"1m"`` -> 60."""
    number, unit = int(text[:-1]), text[-1]
    return number * {"s": 1, "m": 60, "h": 3600}[unit]


def expand(
    query: str,
    *,
    now_ms: int,
    range_s: int,
    interval_s: int = 60,
    values: dict[str, list[str]] | None = None,
) -> str:
    """What Grafana sends: $timeFilter, $__interval and variables filled in."""
    start = now_ms - range_s * 1000
    query = query.replace("$timeFilter", f"time >= {start}ms and time <= {now_ms}ms")
    query = query.replace("$__interval", f"{interval_s}s")
    for name, options in sorted((values or {}).items(), key=lambda item: -len(item[0])):
        text = options[0] if len(options) == 1 else "(" + "|".join(map(re.escape, options)) + ")"
        query = query.replace("${" + name + "}", text).replace("$" + name, text)
    assert not re.search(r"\$[{A-Za-z_]", query), query  # a variable left unexpanded
    return query


def run_query(server: InfluxServer, db: str, query: str) -> list[dict[str, Any]]:
    """The series of one statement; an InfluxDB error fails the test with the query."""
    result = server.query(query, db=db)["results"][0]  # type: ignore[index]
    assert "error" not in result, f"{result['error']}\n{query}"
    return list(result.get("series", []))


def single_value(series: list[dict[str, Any]]) -> float | None:
    """A stat panel's value: the last non-null of the (only) series."""
    values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
    return values[-1] if values else None


def table_rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A table panel's rows: group-by tags and columns by name, as Grafana's table shows."""
    rows = []
    for s in series:
        for values in s["values"]:
            rows.append({**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))})
    return rows


def sort_like_grafana(rows: list[dict[str, Any]], options: dict[str, Any]) -> list[dict[str, Any]]:
    """A table's ``sortBy`` applied (nulls last either way)."""
    (by,) = options["sortBy"]
    key, desc = by["displayName"], by["desc"]
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    return sorted(present, key=lambda r: float(r[key]), reverse=desc) + missing


def firing(series: list[dict[str, Any]], op: str, threshold: float) -> dict[str, float]:
    """Grafana's reduce(last) + threshold per series: label text -> value, for those firing."""
    out = {}
    for s in series:
        values = [row[-1] for row in s["values"] if row[-1] is not None]
        if not values:
            continue
        value = float(values[-1])
        hit = value > threshold if op == "gt" else value < threshold
        if hit and not math.isnan(value):
            out[",".join(f"{k}={v}" for k, v in sorted(s.get("tags", {}).items()))] = value
    return out


def panel(dashboard: dict[str, Any], title_start: str) -> dict[str, Any]:
    """The one panel whose title starts so."""
    (found,) = [p for p in dashboard["panels"] if p["title"].startswith(title_start)]
    return found
