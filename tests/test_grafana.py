"""The Grafana dashboards: valid against Grafana's schema, and every query answers.

The queries run against a real InfluxDB holding data the collector wrote from the
simulator (sessions, a sequence gap, a reconnect, its own collector_stats); each
must return no error and at least one non-null value, since a misspelt
measurement or field returns nothing rather than an error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio
import yaml

from collector.app.daemon import run_daemon
from collector.config import Settings
from collector.devtools import grafana
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import WsFault
from collector.gate.protocol import ASSET_DETAIL
from collector.keys import generate_master_key
from tests.servers import InfluxServer

HERE = Path(__file__).parent
SCHEMA = json.loads((HERE / "grafana" / "dashboard.jsonschema.json").read_text())
PROVISIONING = HERE.parent / "deploy" / "grafana" / "provisioning"
DB = "grafana"


@pytest.mark.parametrize("name", sorted(grafana.dashboards()))
def test_dashboard_validates_against_grafanas_schema(name: str) -> None:
    committed = json.loads((PROVISIONING / "dashboards" / name).read_text())
    jsonschema.validate(committed, SCHEMA)


@pytest.mark.parametrize("name", sorted(grafana.dashboards()))
def test_committed_json_is_what_the_code_builds(name: str) -> None:
    committed = (PROVISIONING / "dashboards" / name).read_text()
    assert committed == grafana.render(grafana.dashboards()[name]), (
        "run `python -m collector.devtools.grafana` and commit the result"
    )


def test_the_schema_would_catch_a_broken_dashboard() -> None:
    broken = grafana.dashboards()["broker-overview.json"]
    broken["panels"][0]["gridPos"] = {"x": 0}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_provisioning_files_point_at_the_dashboards_and_an_influxql_datasource() -> None:
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "gate-influxdb.yaml").read_text())
    (source,) = datasource["datasources"]
    assert (source["type"], source["uid"]) == ("influxdb", "gate-influxdb")
    assert source["url"] == "${GATE_INFLUX_URL}"
    assert source["jsonData"]["dbName"] == "${GATE_INFLUX_DATABASE}"
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "gate-collector.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    for dashboard in grafana.dashboards().values():
        variable = dashboard["templating"]["list"][0]
        assert variable["current"]["value"] == source["uid"]


# -- every query against real data -------------------------------------------------


@pytest.fixture(scope="module")
def written(influxdb: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> InfluxServer:
    """InfluxDB with a few seconds of collector data, gaps and collector_stats included."""

    async def collect() -> None:
        sim = Simulator.create(accounts=8, disabled_every=4)
        sim.state.push_interval = sim.state.change_interval = 0.1
        for account in sim.state.accounts.values():
            account.u_mode = "counter"  # gap panels need a sequence to break
        state_dir = tmp_path_factory.mktemp("state")
        async with trio.open_nursery() as nursery:
            await sim.start(nursery)
            settings = Settings.model_validate(
                {
                    "gate": {
                        "rest_url": sim.rest_url,
                        "ws_url": sim.ws_url,
                        "api_key": sim.state.broker.key,
                        "api_secret": sim.state.broker.secret,
                    },
                    "state": {"dir": str(state_dir), "master_key": generate_master_key()},
                    "influx": {"url": influxdb.url, "database": DB, "flush_interval": 0.2},
                }
            )
            stop = trio.Event()

            async def script() -> None:
                await trio.sleep(2)
                sim.state.accounts[100001].ws_faults.append(WsFault("gap", ASSET_DETAIL, 2))
                sim.state.accounts[100002].ws_faults.append(WsFault("drop"))
                await trio.sleep(4)
                stop.set()

            nursery.start_soon(script)
            await run_daemon(settings, stop=stop, stats_interval=0.3)
            nursery.cancel_scope.cancel()

    trio.run(collect)
    return influxdb


def run_query(server: InfluxServer, query: str) -> list[dict[str, Any]]:
    result = server.query(query, db=DB)["results"][0]  # type: ignore[index]
    assert "error" not in result, f"{result['error']}\n{query}"
    return list(result.get("series", []))


def tag_values(server: InfluxServer, query: str) -> list[str]:
    return [row[1] for s in run_query(server, query) for row in s["values"]]


def expand(query: str, values: dict[str, list[str]]) -> str:
    """What Grafana sends: $timeFilter, $__interval and variables filled in."""
    query = query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "1s")
    for name, options in sorted(values.items(), key=lambda item: -len(item[0])):
        text = options[0] if len(options) == 1 else "(" + "|".join(options) + ")"
        query = query.replace("${" + name + "}", text).replace("$" + name, text)
    assert not re.search(r"\$[{A-Za-z_]", query), query  # a variable left unexpanded
    return query


def variable_values(server: InfluxServer, dashboard: dict[str, Any]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = tag_values(server, expand(variable["query"], values))
            assert found, f"variable {variable['name']} has no values"
            values[variable["name"]] = found if variable.get("includeAll") else found[:1]
        elif variable["type"] == "custom":
            values[variable["name"]] = [variable["current"]["value"]]
    return values


def has_a_value(series: list[dict[str, Any]]) -> bool:
    return any(v is not None for s in series for row in s["values"] for v in row[1:])


def test_the_gap_annotation_is_queried() -> None:
    assert any(
        "gate_sequence_gap" in query
        for _, query in queries(grafana.dashboards()["account-detail.json"])
    )


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = [
        (f"panel {p['title']!r}", t["query"]) for p in dashboard["panels"] for t in p["targets"]
    ]
    found += [
        (f"annotation {a['name']!r}", a["target"]["query"])
        for a in dashboard["annotations"]["list"]
        if "query" in a.get("target", {})
    ]
    return found


@pytest.mark.parametrize("name", sorted(grafana.dashboards()))
def test_every_query_runs_and_returns_values(written: InfluxServer, name: str) -> None:
    dashboard = grafana.dashboards()[name]
    values = variable_values(written, dashboard)
    empty = [
        what
        for what, query in queries(dashboard)
        if not has_a_value(run_query(written, expand(query, values)))
    ]
    assert empty == []


def test_a_misspelt_measurement_would_be_caught(written: InfluxServer) -> None:
    assert not has_a_value(run_query(written, 'SELECT last("u") FROM "gate_unified_asset"'))
    assert re.search(r"gate_unified_assets", json.dumps(grafana.dashboards()))
