"""The ``gate-collector`` command as an operator runs it: subprocesses, real servers."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.keys import generate_master_key
from collector.supervisor.placement import owns as in_shard
from tests.servers import InfluxServer, free_port

EXE = [sys.executable, "-m", "collector.app.cli"]


@dataclass
class RunningSimulator:
    rest_url: str
    ws_url: str
    credentials: Path

    @property
    def secret(self) -> str:
        return (self.credentials / "gate-api-secret").read_text()


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[RunningSimulator]:
    creds = tmp_path / "creds"
    process = subprocess.Popen(
        [
            *EXE,
            "simulate",
            "--accounts",
            "10",
            "--disabled-every",
            "5",
            "--credentials-dir",
            str(creds),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], 30)
        assert readable, "the simulator did not print its URLs within 30 s"
        ready = json.loads(process.stdout.readline())
        assert ready["ws_url"].startswith("ws://127.0.0.1:")
        yield RunningSimulator(ready["rest_url"], ready["ws_url"], creds)
    finally:
        process.terminate()
        process.wait(timeout=10)


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
    full_env.update(env or {})
    return subprocess.run(
        [*EXE, *args], env=full_env, capture_output=True, text=True, timeout=60, check=False
    )


def config_file(
    tmp_path: Path,
    rest_url: str,
    influx_url: str,
    ws_url: str = "ws://127.0.0.1:1/v4/ws/unified",
    influx: str = "",
) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(
        f'[gate]\nrest_url = "{rest_url}"\nws_url = "{ws_url}"\n[state]\ndir = "{tmp_path}/state"\n'
        f'[influx]\nurl = "{influx_url}"\n{influx}'
    )
    return path


def test_accounts_lists_status_and_key_state(tmp_path: Path, simulator: RunningSimulator) -> None:
    config = config_file(tmp_path, simulator.rest_url, "http://127.0.0.1:1")
    env = {"CREDENTIALS_DIRECTORY": str(simulator.credentials)}
    result = run(["accounts", "--config", str(config), "--json"], env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 10
    assert sum(r["status"] == "disabled" for r in rows) == 2
    assert {r["key"] for r in rows} == {"unknown", "-"}
    assert {r["state"] for r in rows} == {"unknown", "-"}  # no master key: nothing to read


def test_accounts_provision_then_lists_stored_keys(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    config = config_file(tmp_path, simulator.rest_url, "http://127.0.0.1:1")
    env = {
        "CREDENTIALS_DIRECTORY": str(simulator.credentials),
        "GATE_COLLECTOR_MASTER_KEY": generate_master_key(),
    }
    before = json.loads(run(["accounts", "--config", str(config), "--json"], env).stdout)
    assert {r["key"] for r in before if r["status"] == "enabled"} == {"missing"}
    assert {r["state"] for r in before if r["status"] == "enabled"} == {"keyless"}

    result = run(["accounts", "--config", str(config), "--json", "--provision"], env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["key"] for r in rows if r["status"] == "enabled"] == ["stored"] * 8
    # each account read with its own key: Gate answers /unified/accounts
    assert [r["state"] for r in rows if r["status"] == "enabled"] == ["unified"] * 8
    assert "8 created" in result.stderr
    again = run(["accounts", "--config", str(config), "--provision"], env)
    assert "0 created, 8 reused" in again.stderr
    assert "USER_ID" in again.stdout and "8 with a stored key" in again.stdout
    assert "STATE" in again.stdout
    assert simulator.secret not in result.stdout + result.stderr + again.stdout + again.stderr


def test_check_passes_with_gate_and_influxdb_reachable(
    tmp_path: Path, simulator: RunningSimulator, influxdb: InfluxServer
) -> None:
    influxdb.create_database("gate")
    config = config_file(tmp_path, simulator.rest_url, influxdb.url, simulator.ws_url)
    env = {
        "CREDENTIALS_DIRECTORY": str(simulator.credentials),
        "GATE_COLLECTOR_MASTER_KEY": generate_master_key(),
    }
    result = run(["check", "--config", str(config)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok:") == 5
    assert f"ok: Gate WebSocket at {simulator.ws_url} answers unified.ping" in result.stdout
    assert "accepts writes to database gate" in result.stdout
    assert simulator.secret not in result.stdout + result.stderr


def tree(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and directory under ``path``: mode and content."""
    return {
        str(p.relative_to(path)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(path.rglob("*"))
    }


def test_check_changes_nothing_in_the_state_directory(
    tmp_path: Path, simulator: RunningSimulator, influxdb: InfluxServer
) -> None:
    influxdb.create_database("gate")
    config = config_file(tmp_path, simulator.rest_url, influxdb.url, simulator.ws_url)
    env = {
        "CREDENTIALS_DIRECTORY": str(simulator.credentials),
        "GATE_COLLECTOR_MASTER_KEY": generate_master_key(),
    }
    first = run(["check", "--config", str(config)], env)
    assert first.returncode == 0, first.stdout
    assert not (tmp_path / "state").exists()  # no key store created under this master key

    assert run(["accounts", "--config", str(config), "--provision"], env).returncode == 0
    before = tree(tmp_path / "state")
    assert "keys.jsonl" in before
    again = run(["check", "--config", str(config)], env)
    assert again.returncode == 0, again.stdout
    assert "(8 keys)" in again.stdout
    assert tree(tmp_path / "state") == before

    wrong = run(
        ["check", "--config", str(config)],
        {**env, "GATE_COLLECTOR_MASTER_KEY": generate_master_key()},
    )
    assert wrong.returncode == 2  # a local problem, as `run` says it
    assert "FAIL: the master key does not open" in wrong.stdout
    assert tree(tmp_path / "state") == before


def fail_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("FAIL")]


def test_check_fails_in_one_line_on_a_bad_ws_url(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    bad = f"ws://127.0.0.1:{free_port()}/v4/ws/unified"  # nothing listens there
    config = config_file(tmp_path, simulator.rest_url, "http://127.0.0.1:1", bad)
    env = {"CREDENTIALS_DIRECTORY": str(simulator.credentials)}
    (line,) = fail_lines(run(["check", "--config", str(config)], env))
    assert line.startswith(f"FAIL: Gate WebSocket at {bad}: ") and line.endswith(
        "check gate.ws_url"
    )


def test_check_fails_in_one_line_on_a_missing_database(
    tmp_path: Path, simulator: RunningSimulator, influxdb: InfluxServer
) -> None:
    config = config_file(
        tmp_path,
        simulator.rest_url,
        influxdb.url,
        simulator.ws_url,
        'database = "absent"\ncreate_database = false\n',
    )
    env = {
        "CREDENTIALS_DIRECTORY": str(simulator.credentials),
        "GATE_COLLECTOR_MASTER_KEY": generate_master_key(),
    }
    (line,) = fail_lines(run(["check", "--config", str(config)], env))
    assert line == (
        f"FAIL: InfluxDB at {influxdb.url} refuses a write to database absent: 404 "
        '{"error":"database not found: \\"absent\\""}; '
        "create it, or set influx.database / influx.bucket"
    )
    assert "absent" not in str(influxdb.query("SHOW DATABASES"))


def test_check_fails_in_one_line_on_v2_without_a_token(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    config = config_file(
        tmp_path,
        simulator.rest_url,
        "http://127.0.0.1:1",
        simulator.ws_url,
        'api = "v2"\norg = "gate"\nbucket = "gate"\n',
    )
    env = {
        "CREDENTIALS_DIRECTORY": str(simulator.credentials),
        "GATE_COLLECTOR_MASTER_KEY": generate_master_key(),
    }
    (line,) = fail_lines(run(["check", "--config", str(config)], env))
    assert line == (
        "FAIL: influx.api = \"v2\" needs influx.token (INFLUX_TOKEN or credential 'influx-token')"
    )


def test_check_fails_plainly_when_influxdb_is_down(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    config = config_file(
        tmp_path, simulator.rest_url, f"http://127.0.0.1:{free_port()}", simulator.ws_url
    )
    env = {
        "CREDENTIALS_DIRECTORY": str(simulator.credentials),
        "GATE_COLLECTOR_MASTER_KEY": generate_master_key(),
    }
    result = run(["check", "--config", str(config)], env)
    assert result.returncode == 1
    assert "FAIL: InfluxDB" in result.stdout
    assert "influx.url" in result.stdout


def test_check_fails_plainly_on_a_wrong_broker_secret(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    config = config_file(tmp_path, simulator.rest_url, "http://127.0.0.1:1")
    key = (simulator.credentials / "gate-api-key").read_text()
    env = {"GATE_API_KEY": key, "GATE_API_SECRET": "9" * 64}
    result = run(["check", "--config", str(config)], env)
    assert result.returncode == 1
    assert "INVALID_SIGNATURE" in result.stdout
    assert "9" * 64 not in result.stdout + result.stderr


def test_check_fails_with_exit_2_on_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[gate]\nrest_urll = 'x'\n")
    result = run(["check", "--config", str(path)])
    assert result.returncode == 2
    assert "gate.rest_urll" in result.stderr and "'rest_url'" in result.stderr


def test_check_without_broker_key_says_where_to_put_it(tmp_path: Path) -> None:
    config = config_file(tmp_path, "http://127.0.0.1:1/api/v4", "http://127.0.0.1:1")
    result = run(["check", "--config", str(config)])
    assert result.returncode == 2
    assert "GATE_API_KEY" in result.stderr


def test_genkey_prints_a_usable_master_key(tmp_path: Path) -> None:
    result = run(["genkey"])
    assert result.returncode == 0
    from collector.keys import KeyStore

    assert len(KeyStore.open(tmp_path, result.stdout.strip())) == 0


def test_accounts_provision_keeps_to_the_shard(tmp_path: Path, simulator: RunningSimulator) -> None:
    config = config_file(tmp_path, simulator.rest_url, "http://127.0.0.1:1")
    env = {
        "CREDENTIALS_DIRECTORY": str(simulator.credentials),
        "GATE_COLLECTOR_MASTER_KEY": generate_master_key(),
        "GATE_COLLECTOR__ACCOUNTS__SHARD": '"1/2"',
    }
    result = run(["accounts", "--config", str(config), "--json", "--provision"], env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    stored = {r["user_id"] for r in rows if r["key"] == "stored"}
    mine = {r["user_id"] for r in rows if r["status"] == "enabled" and in_shard(r["user_id"], 1, 2)}
    assert 0 < len(mine) < 8
    assert stored == mine
    assert f"{len(mine)} created" in result.stderr


def test_version_prints_name_and_package_version() -> None:
    from importlib import metadata

    result = run(["--version"])
    assert result.returncode == 0
    assert result.stdout == f"gate-collector {metadata.version('gate-collector')}\n"


def test_every_option_of_every_command_has_help_text() -> None:
    from collector.app.cli import command_options

    options = command_options()
    missing = [
        f"{name} {flag}"
        for name, each in options.items()
        for flag, text in each.items()
        if not text
    ]
    assert missing == []
    assert sorted(options) == [
        "",  # the options before any command
        "accounts",
        "check",
        "demo",
        "genkey",
        "influx-setup",
        "keys list",
        "keys repair",
        "plan",
        "run",
        "simulate",
        "top",
    ]
    assert options["keys list"]["--config"] == "the TOML configuration file"
    assert set(options[""]) == {"-h --help", "--config", "--log-level", "--log-format", "--version"}


@pytest.mark.parametrize(
    "args",
    [
        ["--log-level", "debug", "--config", "C", "check"],
        ["check", "--log-level", "debug", "--config", "C"],
        ["--config", "C", "check", "--log-level", "debug"],
    ],
)
def test_global_options_go_before_or_after_the_command(args: list[str]) -> None:
    from collector.app.cli import _parser

    parsed = _parser().parse_args(args)
    assert (parsed.command, parsed.log_level, str(parsed.config)) == ("check", "debug", "C")


def test_log_level_after_the_command_is_accepted(tmp_path: Path) -> None:
    config = config_file(tmp_path, "http://127.0.0.1:1/api/v4", "http://127.0.0.1:1")
    # A missing broker key is an error: at level "error" it is still said, and
    # the same command with "--log-level" after "check" is accepted, not refused.
    result = run(["check", "--config", str(config), "--log-level", "error"])
    assert result.returncode == 2, result.stderr
    assert "unrecognized arguments" not in result.stderr
    assert "GATE_API_KEY" in result.stderr


def test_a_command_that_needs_the_config_says_so(tmp_path: Path) -> None:
    result = run(["check"])
    assert result.returncode == 2
    assert (
        result.stderr
        == "gate-collector: `gate-collector check` needs --config PATH (the TOML file)\n"
    )


def test_run_once_prints_one_snapshot_per_enabled_account_and_writes_nothing(
    tmp_path: Path, simulator: RunningSimulator, influxdb: InfluxServer
) -> None:
    influxdb.create_database("once")
    config = config_file(
        tmp_path, simulator.rest_url, influxdb.url, simulator.ws_url, 'database = "once"\n'
    )
    env = {
        "CREDENTIALS_DIRECTORY": str(simulator.credentials),
        "GATE_COLLECTOR_MASTER_KEY": generate_master_key(),
    }
    assert run(["accounts", "--config", str(config), "--provision"], env).returncode == 0
    result = run(["run", "--once", "--config", str(config)], env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assets = [line for line in lines if line.startswith("gate_unified_assets,")]
    details = [line for line in lines if line.startswith("gate_unified_asset_detail,")]
    assert len(assets) == 8 and len(lines) == 8 + 8 * 3
    assert len({line.split(",")[1] for line in assets}) == 8  # one per account
    assert all("unified_account_total_equity=" in line for line in assets)
    assert all(",currency=" in line and "available=" in line for line in details)
    answer = influxdb.query("SELECT count(*) FROM /.*/", db="once")
    assert "series" not in answer["results"][0]  # type: ignore[index]
    alias = run(["run", "--test", "--config", str(config)], env)  # Telegraf's name for it
    assert alias.returncode == 0 and len(alias.stdout.splitlines()) == len(lines)
