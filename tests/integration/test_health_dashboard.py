"""The health dashboard's "is each collector reporting" panel on a real InfluxDB:
every instance seen in the range is listed, the silent one red (0), never missing;
and the Grafana alert rules keep off what they cannot see during an outage."""

from __future__ import annotations

import time

import httpx
import pytest

from collector.devtools import grafana
from collector.devtools.grafana import alerts
from tests.helpers import expand, panel, run_query
from tests.servers import InfluxServer

DB = "health_panel"
TITLE = "Stats points per minute (last 3 min)"


@pytest.fixture(scope="module")
def stats(influxdb: InfluxServer) -> int:
    """'alive' wrote every 10 s until now, 'dead' stopped 20 minutes ago; returns now."""
    now_ms = int(time.time() * 1000)
    influxdb.create_database(DB)
    lines = []
    for t in range(now_ms - 3_600_000, now_ms, 10_000):
        lines.append(f"collector_stats,instance=alive,shard=0/2 sessions_total=3i {t}")
        if t < now_ms - 1_200_000:
            lines.append(f"collector_stats,instance=dead,shard=1/2 sessions_total=3i {t}")
    answer = httpx.post(
        f"{influxdb.url}/write", params={"db": DB, "precision": "ms"}, content="\n".join(lines)
    )
    assert answer.status_code == 204, answer.text
    return now_ms


@pytest.mark.parametrize("range_s", [3600, 86_400])
def test_a_silent_instance_is_listed_with_0_and_a_live_one_above(
    influxdb: InfluxServer, stats: int, range_s: int
) -> None:
    board = grafana.dashboards()["collector-health.json"]
    [target] = panel(board, TITLE)["targets"]
    query = expand(target["query"], now_ms=stats, range_s=range_s, values={"instance": [".*"]})
    last = {s["tags"]["instance"]: s["values"][-1][1] for s in run_query(influxdb, DB, query)}
    assert last["dead"] == 0
    assert last["alive"] >= 4  # 6 a minute; the minute just begun may hold fewer
    thresholds = panel(board, TITLE)["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in thresholds] == [(None, "red"), (1, "green")]


def test_grafana_keeps_no_delivery_rule_it_could_only_fire_after_the_outage() -> None:
    uids = {rule.uid for rule in alerts.rules()}
    assert not uids & {"gate-spool-growing", "gate-write-errors"}
    [silent] = [rule for rule in alerts.rules() if rule.uid == "gate-collector-silent"]
    assert "or InfluxDB is not taking its writes" in silent.summary
