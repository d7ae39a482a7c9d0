"""The Grafana dashboards and alert rules: valid, committed as built, right after a real run.

The queries run against a real InfluxDB holding data the collector wrote from the
simulator (sessions, a sequence gap, a reconnect, its own collector_stats and
totals); each must return no error and at least one non-null value, since a
misspelt measurement or field returns nothing rather than an error, and the risk
panels must agree with the raw points the collector wrote.
(tests/test_dashboard_values.py checks the values on known 24 h histories.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio
import yaml

from collector.app.daemon import run_daemon
from collector.config import Settings
from collector.devtools import grafana
from collector.devtools.grafana import alerts
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import WsFault
from collector.gate.protocol import ASSET_DETAIL
from collector.keys import generate_master_key
from collector.points import schema
from tests import helpers as grafana_eval  # the dashboard query runner
from tests.servers import InfluxServer

HERE = Path(__file__).parents[1]
SCHEMA = json.loads((HERE / "grafana" / "dashboard.jsonschema.json").read_text())
PROVISIONING = HERE.parent / "deploy" / "grafana" / "provisioning"
DB = "grafana"
STOPPED_MS: list[int] = []  # when the collector run was told to stop


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


def test_committed_alert_rules_are_what_the_code_builds() -> None:
    committed = (PROVISIONING / grafana.ALERTS_FILE).read_text()
    assert committed == grafana.render_rules(grafana.alert_rules()), (
        "run `python -m collector.devtools.grafana` and commit the result"
    )


def test_alert_rules_are_grafana_provisioning_yaml() -> None:
    document = yaml.safe_load((PROVISIONING / grafana.ALERTS_FILE).read_text())
    (group,) = document["groups"]
    assert document["apiVersion"] == 1 and group["folder"] == "Gate"
    for rule in group["rules"]:
        query, reduce, threshold = rule["data"]
        assert query["datasourceUid"] == "gate-influxdb" and query["model"]["rawQuery"]
        assert (reduce["model"]["type"], threshold["model"]["type"]) == ("reduce", "threshold")
        assert rule["condition"] == "C" and rule["for"]


def test_the_margin_alert_level_is_a_setting(tmp_path: Path) -> None:
    grafana.main([str(tmp_path), "--margin-alert-rate", "1.25"])
    document = yaml.safe_load((tmp_path / grafana.ALERTS_FILE).read_text())
    (margin,) = [r for r in document["groups"][0]["rules"] if r["uid"] == "gate-margin-low"]
    assert margin["data"][2]["model"]["conditions"][0]["evaluator"]["params"] == [1.25]
    assert margin["title"] == "Maintenance margin rate below 125%"


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
                STOPPED_MS.append(int(time.time() * 1000))
                stop.set()

            nursery.start_soon(script)
            await run_daemon(settings, stop=stop, stats_interval=0.3)
            nursery.cancel_scope.cancel()

    trio.run(collect)
    return influxdb


def run_query(server: InfluxServer, query: str) -> list[dict[str, Any]]:
    return grafana_eval.run_query(server, DB, query)


def tag_values(server: InfluxServer, query: str) -> list[str]:
    return [row[1] for s in run_query(server, query) for row in s["values"]]


def expand(query: str, values: dict[str, list[str]], range_s: int = 3600, now_ms: int = 0) -> str:
    """What Grafana sends for the hour up to the stop of the run.

    The run's last stats tick may fall in its shutdown, when the sessions are
    already closing: a true "disconnected", but not the state these tests check.
    """
    return grafana_eval.expand(
        query, now_ms=now_ms or STOPPED_MS[-1], range_s=range_s, interval_s=1, values=values
    )


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


def counts_of_alarms(panel: dict[str, Any]) -> bool:
    """A count of bad things (stale accounts, ...): no rows means zero, shown as "0"."""
    return bool(panel["fieldConfig"]["defaults"].get("noValue") == "0")


def queries(dashboard: dict[str, Any], *, all_panels: bool = True) -> list[tuple[str, str]]:
    found = [
        (f"panel {p['title']!r}", t["query"])
        for p in dashboard["panels"]
        for t in p["targets"]
        if all_panels or not counts_of_alarms(p)
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
    answers = {
        what: run_query(written, expand(query, values)) for what, query in queries(dashboard)
    }
    expected = dict(queries(dashboard, all_panels=False))
    assert [what for what in expected if not has_a_value(answers[what])] == []


def raw_last(server: InfluxServer, field_name: str, until_ms: int = 0) -> dict[str, float]:
    """Each account's last value of a field in the raw pushes (up to ``until_ms``)."""
    until = f" WHERE time <= {until_ms}ms" if until_ms else ""
    series = run_query(
        server,
        f'SELECT last("{field_name}") FROM "{schema.ASSETS}"{until} '
        f'GROUP BY "{schema.TAG_ACCOUNT}"',
    )
    return {s["tags"][schema.TAG_ACCOUNT]: s["values"][0][1] for s in series}


def test_after_a_real_run_total_equity_is_the_sum_of_the_last_equities(
    written: InfluxServer,
) -> None:
    board = grafana.dashboards()["broker-overview.json"]
    (query,) = [t["query"] for t in grafana_eval.panel(board, "Total equity")["targets"]]
    # up to now: the collector's final totals, written after its last push
    now_ms = int(time.time() * 1000)
    total = grafana_eval.single_value(run_query(written, expand(query, {}, now_ms=now_ms)))
    last = raw_last(written, schema.EQUITY)
    assert len(last) == 6  # 8 accounts, every 4th disabled
    assert total == pytest.approx(sum(last.values()), rel=1e-12)


def test_after_a_real_run_the_liquidation_ranking_starts_at_the_lowest_rate(
    written: InfluxServer,
) -> None:
    board = grafana.dashboards()["broker-overview.json"]
    table = grafana_eval.panel(board, "Closest to liquidation")
    rows = grafana_eval.sort_like_grafana(
        grafana_eval.table_rows(run_query(written, expand(table["targets"][0]["query"], {}))),
        table["options"],
    )
    (tick,) = run_query(  # the stats tick the table shows (one selector: its own time)
        written,
        f'SELECT last("{schema.STATE_SESSION}") FROM "{schema.ACCOUNT_STATE}" '
        f"WHERE time <= {STOPPED_MS[-1]}ms",
    )
    as_of = tick["values"][0][0]
    rates = raw_last(written, schema.MAINTENANCE_MARGIN_RATE, until_ms=as_of)
    assert [r[schema.TAG_ACCOUNT] for r in rows] == sorted(rates, key=lambda a: rates[a])
    assert rows[0]["maintenance margin rate"] == min(rates.values())


def test_after_a_real_run_every_account_has_a_connected_state(written: InfluxServer) -> None:
    board = grafana.dashboards()["broker-overview.json"]
    table = grafana_eval.panel(board, "Accounts by staleness")
    rows = grafana_eval.table_rows(run_query(written, expand(table["targets"][0]["query"], {})))
    assert sorted(r[schema.TAG_ACCOUNT] for r in rows) == sorted(raw_last(written, schema.EQUITY))
    assert all(0 <= r["seconds since update"] < 5 for r in rows)
    assert all(r["session"] == schema.SESSION_CONNECTED for r in rows), rows


def test_every_alert_query_runs_after_a_real_run(written: InfluxServer) -> None:
    fired = {}
    for rule in alerts.rules():
        series = run_query(
            written,
            expand(rule.query, {}, range_s=rule.minutes * 60),
        )
        assert series, rule.uid
        fired[rule.uid] = grafana_eval.firing(series, rule.op, rule.threshold)
    # the simulator's rates are 20..108 (2000 % and up): nothing near liquidation
    assert fired["gate-margin-low"] == {}
    assert fired["gate-account-broken"] == {}
    assert fired["gate-collector-silent"] == {}


def test_a_misspelt_measurement_would_be_caught(written: InfluxServer) -> None:
    misspelt = f'SELECT last("{schema.STATE_SESSION}") FROM "gate_account_stat"'
    assert not has_a_value(run_query(written, misspelt))
    assert f'\\"{schema.ACCOUNT_STATE}\\"' in json.dumps(grafana.dashboards())
