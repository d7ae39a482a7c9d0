"""SIGHUP against a running ``gate-collector run``: the config is re-read, nothing is lost.

Uses the end-to-end set-up of ``tests/test_daemon.py``: the simulator in the
test's trio loop, the collector as a subprocess, a real InfluxDB.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

from collector.app.reload import plan
from collector.config import Settings
from collector.devtools.simulator import Simulator
from collector.gate.protocol import ASSET_DETAIL, ASSETS
from tests.helpers import Collector, all_subscribed, enabled, query, wait_until
from tests.servers import InfluxServer


def write_config(collector: Collector, sim: Simulator, influx: InfluxServer, extra: str) -> None:
    collector.config.write_text(
        f'[gate]\nrest_url = "{sim.rest_url}"\nws_url = "{sim.ws_url}"\n{extra}'
        f'[state]\ndir = "{collector.tmp}/state"\n'
        f'[influx]\nurl = "{influx.url}"\ndatabase = "reload"\nflush_interval = 0.2\n'
    )


async def start(collector: Collector, *args: str) -> None:
    """Start with ``args`` after the command (``run --config F --log-level ...``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATE_")}
    env.update(
        CREDENTIALS_DIRECTORY=str(collector.tmp / "creds"),
        GATE_COLLECTOR_MASTER_KEY=collector.master_key,
    )
    with collector.log.open("ab") as out:
        collector.process = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "collector.app.cli",
                "run",
                "--config",
                str(collector.config),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


async def test_sighup_changes_log_level_and_currencies_and_loses_no_update(
    gate: Simulator, influxdb: InfluxServer, tmp_path: Path
) -> None:
    collector = Collector(tmp_path, gate, influxdb, "reload")
    write_config(collector, gate, influxdb, 'currencies = ["BTC", "ETH", "USDT"]\n')
    live = enabled(gate)
    await start(collector, "--log-level", "warning")
    await wait_until(lambda: all_subscribed(gate, live))
    await trio.sleep(1.0)
    before = collector.log.read_text()
    assert '"level": "info"' not in before  # --log-level after the command is obeyed

    write_config(
        collector,
        gate,
        influxdb,
        'currencies = ["BTC"]\nmax_connections_per_ip = 299\n[log]\nlevel = "debug"\n',
    )
    subscribes = gate.state.ws_events["subscribe"]
    connections = gate.state.ws_connections
    assert collector.process is not None
    collector.process.send_signal(signal.SIGHUP)
    # Each session subscribes asset_detail again on its live connection: no reconnect.
    await wait_until(lambda: gate.state.ws_events["subscribe"] >= subscribes + len(live))
    await wait_until(lambda: all_subscribed(gate, live))
    eth = {a: dict(gate.state.last_pushed[(a, ASSET_DETAIL, "ETH")]) for a in live}
    pushes = {a: gate.state.pushed[(a, ASSET_DETAIL)] for a in live}
    await wait_until(
        lambda: all(gate.state.pushed[(a, ASSET_DETAIL)] >= pushes[a] + 3 for a in live)
    )
    assert {a: gate.state.last_pushed[(a, ASSET_DETAIL, "ETH")] for a in live} == eth
    assert gate.state.ws_connections == connections
    gate.state.paused = True
    await trio.sleep(1.0)
    assert await collector.stop() == 0  # SIGHUP did not kill it

    log = collector.log.read_text()[len(before) :]
    assert '"event": "reloaded"' in log and '"level": "debug"' in log
    assert '"event": "reload_needs_restart"' in log and "gate.max_connections_per_ip" in log
    assets = {
        s["tags"]["account"]: s["values"][0][1]
        for s in query(
            influxdb, "reload", "SELECT count(u) FROM gate_unified_assets GROUP BY account"
        )
    }
    btc = {
        s["tags"]["account"]: s["values"][0][1]
        for s in query(
            influxdb,
            "reload",
            # balance is push-only (no REST twin): snapshots write available, not it
            "SELECT count(balance) FROM gate_unified_asset_detail "
            "WHERE currency = 'BTC' GROUP BY account",
        )
    }
    assert assets == {str(a): gate.state.pushed[(a, ASSETS)] for a in live}
    assert btc == {str(a): gate.state.pushed[(a, ASSET_DETAIL)] for a in live}


def test_plan_applies_live_keys_and_names_the_rest() -> None:
    current = Settings.model_validate({"gate": {"currencies": ["BTC"]}})
    new = Settings.model_validate(
        {
            "gate": {"currencies": ["ETH"], "rest_url": "https://other/api/v4"},
            "state": {"dir": "/elsewhere"},
            "influx": {"url": "http://influx2:8086", "spool_max_bytes": 5},
            "log": {"level": "debug"},
        }
    )
    change = plan(current, new)
    assert change.live == ("gate.currencies", "influx.url", "log.level")
    assert change.needs_restart == ("gate.rest_url", "state.dir", "influx.spool_max_bytes")
    running = change.settings
    assert running.gate.currencies == ["ETH"] and running.influx.url == "http://influx2:8086"
    assert running.gate.rest_url == current.gate.rest_url
    assert running.state.dir == current.state.dir
    assert running.influx.spool_max_bytes == current.influx.spool_max_bytes
    assert plan(current, current).live == ()
