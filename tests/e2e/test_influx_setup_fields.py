"""``influx-setup`` keeps every field the collector writes: a real run (simulator,
pushes, snapshots, a sequence gap, stats and totals) into a real InfluxDB, then each
measurement's field keys against what the continuous queries carry."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from collector.app import influx_setup
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import WsFault
from collector.gate.protocol import ASSET_DETAIL
from collector.points import schema
from tests.helpers import collector_config, running_collector, wait_until_ready
from tests.servers import InfluxServer

DB = "setup_fields"


def field_keys(influx: InfluxServer) -> dict[str, set[str]]:
    result = influx.query("SHOW FIELD KEYS", db=DB)["results"][0]  # type: ignore[index]
    return {s["name"]: {row[0] for row in s["values"]} for s in result.get("series", [])}


async def test_every_field_a_real_run_writes_is_downsampled(
    nursery: trio.Nursery, influxdb: InfluxServer, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    sim = Simulator.create(accounts=6, disabled_every=0)
    sim.state.push_interval = sim.state.change_interval = 0.2
    sim.state.accounts[100002].u_mode = "counter"  # a counting u: a gap can be seen
    await sim.start(nursery)
    config = collector_config(tmp_path, sim, influxdb.url, DB)
    async with running_collector(tmp_path, config) as collector:
        await wait_until_ready(http, collector.url)
        await trio.sleep(1.0)  # a few pushes first: a gap before the first is no gap
        sim.state.accounts[100002].ws_faults.append(WsFault("gap", ASSET_DETAIL, count=2))
        with trio.fail_after(60):  # stats and totals come every 10 s
            while not {schema.SEQUENCE_GAP, schema.COLLECTOR_STATS, schema.ACCOUNT_STATE} <= set(
                field_keys(influxdb)
            ):
                await trio.sleep(0.5)
    written = field_keys(influxdb)
    assert set(written) <= set(influx_setup.DOWNSAMPLED)
    missing = {m: sorted(f - set(influx_setup.DOWNSAMPLED[m])) for m, f in written.items()}
    assert {m: f for m, f in missing.items() if f} == {}


def test_the_gap_measurement_sums_what_was_missed() -> None:
    select = influx_setup.downsample(DB, "autogen", "gate_1m", "1m", schema.SEQUENCE_GAP)
    assert f'sum("{schema.GAP_MISSED}") AS "{schema.GAP_MISSED}"' in select
    assert f'last("{schema.GAP_EXPECTED}") AS "{schema.GAP_EXPECTED}"' in select
