"""A small InfluxQL read over httpx (``/query``), for the demo, tests and dashboards' checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from collector.config import InfluxSettings
from collector.sink.request import query_request


class InfluxQueryError(Exception):
    """InfluxDB answered a query with an error."""


@dataclass(frozen=True)
class Series:
    """One series of a query result."""

    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Each value row as a column -> value mapping."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


async def influxql(
    http: httpx.AsyncClient, settings: InfluxSettings, query: str, epoch: str = "ms"
) -> list[Series]:
    """Run ``query`` against ``settings.database``; every statement's series, in order."""
    request = query_request(settings, query, epoch=epoch)
    response = await request.send(http)
    try:
        body = response.json()
    except ValueError:
        raise InfluxQueryError(f"{response.status_code}: {response.text[:200]}") from None
    if "error" in body:
        raise InfluxQueryError(str(body["error"]))
    series: list[Series] = []
    for result in body.get("results", []):
        if "error" in result:
            raise InfluxQueryError(str(result["error"]))
        for item in result.get("series", []):
            series.append(
                Series(item["name"], item["columns"], item["values"], item.get("tags", {}))
            )
    return series
