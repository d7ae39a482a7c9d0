"""The InfluxQL read helper (used by the demo) against the real InfluxDB."""

from __future__ import annotations

import httpx
import pytest

from collector.config import InfluxSettings
from collector.devtools.influxquery import InfluxQueryError, influxql
from tests.servers import InfluxServer


async def test_series_come_back_with_their_tags(influxdb: InfluxServer) -> None:
    influxdb.create_database("iq")
    httpx.post(
        f"{influxdb.url}/write",
        params={"db": "iq", "precision": "ms"},
        content=b"m,account=1 v=1.5 1000\nm,account=2 v=2.5 1000\n",
    ).raise_for_status()
    settings = InfluxSettings(url=influxdb.url, database="iq")
    async with httpx.AsyncClient() as http:
        series = await influxql(http, settings, 'SELECT last("v") FROM m GROUP BY account')
    assert {s.tags["account"]: s.rows()[0]["last"] for s in series} == {"1": 1.5, "2": 2.5}


async def test_an_influxql_error_is_raised_with_influxdbs_words(influxdb: InfluxServer) -> None:
    settings = InfluxSettings(url=influxdb.url, database="iq")
    async with httpx.AsyncClient() as http:
        with pytest.raises(InfluxQueryError, match="error parsing query"):
            await influxql(http, settings, "SELEKT nonsense")
