"""Startup failures: one plain line on stderr, the documented exit code, no traceback.

Exit 1: Gate (or InfluxDB) unreachable or refusing. Exit 2: configuration and
local files. The tests run as root, so "unreadable" and "unwritable" are made
real by starting the collector without the capabilities that let root ignore
file permissions (``setpriv``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from collector.app.commands import write_credentials
from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient
from collector.gate.errors import BadResponseError
from collector.gate.signing import ApiCredentials
from collector.keys import generate_master_key
from tests.servers import InfluxServer, free_port

EXE = [sys.executable, "-m", "collector.app.cli"]
# Root without the file-permission overrides: chmod means something again.
NO_DAC = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]
BROKER = ApiCredentials("k" * 32, "s" * 64)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
    env.pop("CREDENTIALS_DIRECTORY", None)
    env.update(extra)
    return env


def start_failure(
    args: list[str], env: dict[str, str], prefix: list[str] | None = None
) -> tuple[int, list[str]]:
    """Run the command; (exit code, stderr lines). Fails the test on a traceback."""
    result = subprocess.run(
        [*(prefix or []), *EXE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result.returncode, result.stderr.strip().splitlines()


def write_config(tmp_path: Path, **sections: str) -> Path:
    body = {
        "gate": 'rest_url = "http://127.0.0.1:1/api/v4"\nws_url = "ws://127.0.0.1:1/ws"\n',
        "state": f'dir = "{tmp_path / "state"}"\n',
        "influx": f'url = "http://127.0.0.1:{free_port()}"\n',
    }
    body.update(sections)
    path = tmp_path / "collector.toml"
    path.write_text("".join(f"[{name}]\n{text}" for name, text in body.items()))
    return path


def influx_section(server: InfluxServer) -> str:
    """A reachable InfluxDB, for the starts that fail at Gate: their exit then waits for
    Gate's answers, not for the sink's write-out to a closed port (its shutdown_timeout)."""
    return f'url = "{server.url}"\ndatabase = "startup_failures"\n'


def broker_env(tmp_path: Path) -> dict[str, str]:
    write_credentials(tmp_path / "creds", BROKER)
    return clean_env(
        CREDENTIALS_DIRECTORY=str(tmp_path / "creds"),
        GATE_COLLECTOR_MASTER_KEY=generate_master_key(),
    )


def test_a_config_that_is_a_directory(tmp_path: Path) -> None:
    code, lines = start_failure(["run", "--config", str(tmp_path)], clean_env())
    assert code == 2
    assert lines == [
        f"gate-collector: --config {tmp_path} is a directory; pass the TOML file in it"
    ]


def test_an_unreadable_credentials_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = broker_env(tmp_path)
    (tmp_path / "creds").chmod(0o000)
    code, lines = start_failure(["run", "--config", str(config)], env, NO_DAC)
    assert code == 2
    assert len(lines) == 1
    assert "gate-api-key: Permission denied" in lines[0]
    assert "$CREDENTIALS_DIRECTORY" in lines[0]


def test_a_credential_file_that_is_not_utf8(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = broker_env(tmp_path)
    (tmp_path / "creds" / "gate-api-secret").write_bytes(b"\xff\xfe\x00secret")
    code, lines = start_failure(["run", "--config", str(config)], env)
    assert code == 2
    assert lines == [
        f"gate-collector: credential file {tmp_path}/creds/gate-api-secret is not UTF-8 text; "
        "write the bare value into it"
    ]


def test_an_unwritable_state_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = broker_env(tmp_path)
    (tmp_path / "state").mkdir(mode=0o500)
    code, lines = start_failure(["run", "--config", str(config)], env, NO_DAC)
    assert code == 2
    assert len(lines) == 1
    assert str(tmp_path / "state") in lines[0] and "Permission denied" in lines[0]


def test_a_missing_ca_file(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        gate=f'rest_url = "https://127.0.0.1:1/api/v4"\nca_file = "{tmp_path}/nope.pem"\n',
    )
    code, lines = start_failure(["run", "--config", str(config)], broker_env(tmp_path))
    assert code == 2
    assert len(lines) == 1
    assert f"gate.ca_file {tmp_path}/nope.pem" in lines[0] and "PEM" in lines[0]


def test_a_spool_path_that_is_a_file(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "spool").write_text("not a directory")
    code, lines = start_failure(["run", "--config", str(config)], broker_env(tmp_path))
    assert code == 2
    assert len(lines) == 1
    assert f"{tmp_path}/state/spool" in lines[0] and "move it away" in lines[0]


def test_gate_unreachable(tmp_path: Path, influxdb: InfluxServer) -> None:
    config = write_config(
        tmp_path,
        gate=f'rest_url = "http://127.0.0.1:{free_port()}/api/v4"\n',
        influx=influx_section(influxdb),
    )
    code, lines = start_failure(["run", "--config", str(config)], broker_env(tmp_path))
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith("gate-collector: cannot list sub-accounts at start:")


async def collector_exit(
    sim: Simulator, tmp_path: Path, creds: ApiCredentials, influx: InfluxServer
) -> tuple[int, list[str]]:
    config = write_config(
        tmp_path,
        gate=f'rest_url = "{sim.rest_url}"\nws_url = "{sim.ws_url}"\n',
        influx=influx_section(influx),
    )
    write_credentials(tmp_path / "creds", creds)
    env = clean_env(
        CREDENTIALS_DIRECTORY=str(tmp_path / "creds"),
        GATE_COLLECTOR_MASTER_KEY=generate_master_key(),
    )
    with trio.fail_after(60):
        result = await trio.run_process(
            [*EXE, "run", "--config", str(config)],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    return result.returncode, stderr.strip().splitlines()


async def test_a_wrong_broker_key(
    nursery: trio.Nursery, tmp_path: Path, influxdb: InfluxServer
) -> None:
    sim = Simulator.create(accounts=3, disabled_every=0)
    await sim.start(nursery)
    wrong = ApiCredentials(sim.state.broker.key, "0" * 64)
    code, lines = await collector_exit(sim, tmp_path, wrong, influxdb)
    assert code == 1
    assert len(lines) == 1
    assert "INVALID_SIGNATURE" in lines[0] and "0" * 64 not in lines[0]


async def test_a_gate_that_repeats_the_same_page_stops_the_start(
    nursery: trio.Nursery, tmp_path: Path, influxdb: InfluxServer
) -> None:
    sim = Simulator.create(accounts=150, disabled_every=0)  # more than one page of 100
    sim.state.repeat_first_page = True
    sim.state.rate_limit = 100_000
    await sim.start(nursery)
    code, lines = await collector_exit(sim, tmp_path, sim.state.broker, influxdb)
    assert code == 1
    assert len(lines) == 1
    assert "page 2 (offset 100) repeats the page before" in lines[0]
    assert sim.state.calls["GET sub_accounts"] == 2


async def test_paging_that_repeats_a_page_is_an_error_not_a_loop(
    sim: Simulator, broker: BrokerClient
) -> None:
    sim.state.repeat_first_page = True
    with trio.fail_after(10), pytest.raises(BadResponseError, match="repeats the page before"):
        _ = [a async for a in broker.list_sub_accounts(page_size=5)]
    assert sim.state.calls["GET sub_accounts"] == 2


async def test_paging_that_never_ends_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.gate import paging

    monkeypatch.setattr(paging, "MAX_PAGES", 3)
    served: list[int] = []

    def endless(request: httpx.Request) -> httpx.Response:
        # Always a full page of new ids: a Gate that ignores the end of its list.
        offset = int(request.url.params["offset"])
        served.append(offset)
        rows = [{"id": str(offset + i), "gate_id": offset + i} for i in range(2)]
        return httpx.Response(200, json=rows)

    client = BrokerClient(
        httpx.AsyncClient(transport=httpx.MockTransport(endless)), BROKER, base_url="http://gate"
    )
    with trio.fail_after(10), pytest.raises(BadResponseError, match="more than 3 pages"):
        async for _ in client.list_sub_accounts(page_size=2):
            pass
    assert served == [0, 2, 4]
