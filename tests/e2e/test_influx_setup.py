"""``gate-collector influx-setup`` on the real InfluxDB: policies, continuous queries, 1 m data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from collector.app import influx_setup
from collector.points import schema
from tests.servers import InfluxServer

DB = "setup_db"


def run_setup(
    tmp_path: Path, influx: InfluxServer, *extra: str
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "collector.toml"
    config.write_text(f'[influx]\nurl = "{influx.url}"\ndatabase = "{DB}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.app.cli",
            "influx-setup",
            "--config",
            str(config),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rows(influx: InfluxServer, query: str) -> list[list[object]]:
    result = influx.query(query, db=DB)["results"][0]  # type: ignore[index]
    assert "error" not in result, result
    return [row for s in result.get("series", []) for row in s.get("values", [])]


def test_setup_creates_policies_and_continuous_queries_idempotently(
    tmp_path: Path, influxdb: InfluxServer
) -> None:
    for _ in range(2):  # a second run changes nothing and still succeeds
        done = run_setup(tmp_path, influxdb)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "14 continuous queries" in done.stdout
    assert "raw policy left as it was" in done.stdout
    found = rows(influxdb, f'SHOW RETENTION POLICIES ON "{DB}"')
    policies = {row[0]: row[1] for row in found}
    # the database's default policy keeps its duration and stays the default
    assert policies == {"autogen": "0s", "gate_1m": "4320h0m0s", "gate_1h": "0s"}
    assert [row[0] for row in found if row[-1] is True] == ["autogen"]
    result = influxdb.query("SHOW CONTINUOUS QUERIES")["results"][0]  # type: ignore[index]
    (ours,) = [s for s in result["series"] if s["name"] == DB]  # one series per database
    names = {row[0] for row in ours["values"]}
    assert len(names) == 14
    assert f"gate_1h_{schema.SEQUENCE_GAP}" in names
    assert f"gate_1m_{schema.BROKER_TOTALS}" in names
    assert f"gate_1h_{schema.ACCOUNT_STATE}" in names


def test_changed_durations_are_applied(tmp_path: Path, influxdb: InfluxServer) -> None:
    done = run_setup(tmp_path, influxdb, "--raw", "14d", "--minute", "52w")
    assert done.returncode == 0, done.stdout + done.stderr
    policies = {row[0]: row[1] for row in rows(influxdb, f'SHOW RETENTION POLICIES ON "{DB}"')}
    assert (policies["autogen"], policies["gate_1m"]) == ("336h0m0s", "8736h0m0s")


def test_a_bad_duration_is_one_clear_line(tmp_path: Path, influxdb: InfluxServer) -> None:
    done = run_setup(tmp_path, influxdb, "--raw", "90 days")
    assert done.returncode == 2
    assert "retention raw='90 days' is not an InfluxQL duration: use e.g. 90d" in done.stderr


def test_the_downsampling_keeps_the_last_value_per_minute_under_the_same_names(
    tmp_path: Path, influxdb: InfluxServer
) -> None:
    assert run_setup(tmp_path, influxdb).returncode == 0
    start = (int(time.time()) // 60 - 5) * 60_000  # a minute boundary, within the 30 days
    lines = [
        f"{schema.BROKER_TOTALS},instance=h,shard=0/1 {schema.EQUITY}={100.0 + i},"
        f"{schema.TOTALS_ACCOUNTS}=3i {start + i * 10_000}"
        for i in range(18)  # three minutes, every 10 s
    ]
    response = httpx.post(
        f"{influxdb.url}/write", params={"db": DB, "precision": "ms"}, content="\n".join(lines)
    )
    assert response.status_code == 204
    # the test server runs no continuous queries: run the minute query's body once
    select = influx_setup.downsample(DB, "autogen", "gate_1m", "1m", schema.BROKER_TOTALS)
    rows(influxdb, f"{select.replace(' GROUP BY', f' WHERE time >= {start}ms GROUP BY')}")
    got = rows(
        influxdb,
        f'SELECT "{schema.EQUITY}", "{schema.TOTALS_ACCOUNTS}" '
        f'FROM "gate_1m"."{schema.BROKER_TOTALS}" WHERE "shard" = \'0/1\'',
    )
    assert got == [[start, 105.0, 3], [start + 60_000, 111.0, 3], [start + 120_000, 117.0, 3]]


def test_durations_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="hour='forever'"):
        influx_setup.Retention(hour="forever")
