"""``CREATE DATABASE`` for the v1 API: at start (in the background) and when a write says
the database is gone (an InfluxDB that came back empty)."""

from __future__ import annotations

import httpx

from collector.base.logging import get_logger
from collector.config import InfluxSettings
from collector.sink.request import query_request

log = get_logger(__name__)


def may_create(influx: InfluxSettings) -> bool:
    """Whether the collector creates the database itself (v1 and ``create_database``)."""
    return influx.api == "v1" and influx.create_database


async def create_database(http: httpx.AsyncClient, influx: InfluxSettings) -> bool:
    """``CREATE DATABASE`` (idempotent); True when InfluxDB took it. A refusal or no
    answer is one log line: writes keep their data and retry either way."""
    if not may_create(influx):
        return False
    request = query_request(influx, f'CREATE DATABASE "{influx.database}"', database=False)
    try:
        response = await request.send(http, http_timeout=influx.timeout)
    except httpx.HTTPError as exc:
        log.warning(
            "influx_unreachable",
            action="create_database",
            error=type(exc).__name__,
            hint="points are kept and spooled until it answers",
        )
        return False
    if response.status_code >= 400:
        log.warning(
            "create_database_refused", status=response.status_code, answer=response.text[:200]
        )
        return False
    return True
