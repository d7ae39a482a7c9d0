"""A secrets scan of real daemon runs: logs, state files, /status and /metrics.

Run 1: ``gate-collector run`` against the simulator, with a password in
``influx.url`` (InfluxDB down, so every write failure logs the URL), an InfluxDB
token and password, the broker key, the master key and the sub-account keys it
creates. Run 2: wrong broker credentials (the start is refused). No secret may
appear anywhere: 0 hits.
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
from collector.base.logging import redact_url
from collector.config import Settings
from collector.devtools.simulator import Simulator
from collector.gate.signing import ApiCredentials
from collector.keys import generate_master_key
from tests.helpers import wait_until
from tests.servers import free_port

URL_PASSWORD = "Url-Pa55word-7f3a"
TOKEN = "influx-token-c0ffee-91d2"
INFLUX_PASSWORD = "influx-pw-5e5e-1234"
WRONG_SECRET = "wrong-secret-" + "9" * 51


@pytest.fixture
async def gate(nursery: trio.Nursery) -> Simulator:
    sim = Simulator.create(accounts=6)
    sim.state.push_interval = sim.state.change_interval = 0.1
    sim.state.rate_limit = 100_000
    await sim.start(nursery)
    return sim


def environment(tmp_path: Path, master_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
    env.update(
        CREDENTIALS_DIRECTORY=str(tmp_path / "creds"),
        GATE_COLLECTOR_MASTER_KEY=master_key,
        INFLUX_TOKEN=TOKEN,
        INFLUX_PASSWORD=INFLUX_PASSWORD,
    )
    return env


def config(tmp_path: Path, sim: Simulator, port: int) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(
        f'[gate]\nrest_url = "{sim.rest_url}"\nws_url = "{sim.ws_url}"\n'
        f'[state]\ndir = "{tmp_path}/state"\n'
        f'[influx]\nurl = "http://writer:{URL_PASSWORD}@127.0.0.1:{free_port()}"\n'
        'username = "writer"\nflush_interval = 0.1\nspool_after = 0.3\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
    )
    return path


def hits(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret in text]


async def test_no_secret_in_logs_state_files_status_or_metrics(
    gate: Simulator, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    master_key = generate_master_key()
    write_credentials(tmp_path / "creds", gate.state.broker)
    port = free_port()
    log = tmp_path / "collector.log"
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "collector.app.cli", "--log-level", "debug", "run",
             "--config", str(config(tmp_path, gate, port))],
            stdout=out, stderr=subprocess.STDOUT, env=environment(tmp_path, master_key),
        )  # fmt: skip
    try:
        await wait_until(lambda: gate.state.calls["keys_created"] == 6, 60)
        # Writes fail and are logged, with the URL, and what they held is spooled.
        await wait_until(lambda: log.read_bytes().count(b"http://***@127.0.0.1") >= 3, 60)
        await wait_until(lambda: any((tmp_path / "state" / "spool").glob("*.lp.gz")), 60)
        base = f"http://127.0.0.1:{port}"
        pages = [(await http.get(f"{base}{page}")).text for page in ("/status", "/metrics")]
    finally:
        process.terminate()
        with trio.fail_after(60):
            await process.wait()
    secrets = [
        URL_PASSWORD,
        TOKEN,
        INFLUX_PASSWORD,
        master_key,
        gate.state.broker.key,
        gate.state.broker.secret,
        *(key.secret for key in gate.state.keys.values()),
    ]
    assert len(gate.state.keys) == 6
    text = log.read_text()
    assert "http://***@127.0.0.1" in text  # the URL is logged, its userinfo masked
    state_files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert state_files  # the key store, the instance id, the spool
    found = {str(p): hits(p.read_bytes().decode("latin-1"), secrets) for p in state_files}
    assert {name: h for name, h in found.items() if h} == {}
    assert hits(text, secrets) == []
    assert [hits(page, secrets) for page in pages] == [[], []]


async def test_wrong_broker_credentials_leak_nothing(tmp_path: Path, gate: Simulator) -> None:
    wrong = ApiCredentials(gate.state.broker.key, WRONG_SECRET)
    write_credentials(tmp_path / "creds", wrong)
    env = environment(tmp_path, generate_master_key())
    with trio.fail_after(90):  # run_process kills it when cancelled
        result = await trio.run_process(
            [sys.executable, "-m", "collector.app.cli", "run", "--config",
             str(config(tmp_path, gate, free_port()))],
            env=env, capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    output = (result.stdout + result.stderr).decode()
    assert "Traceback" not in output
    assert "signature" in output.lower() or "refused" in output.lower(), output
    assert hits(output, [WRONG_SECRET, URL_PASSWORD, TOKEN, INFLUX_PASSWORD]) == []


def test_settings_repr_masks_a_urls_password() -> None:
    settings = Settings.model_validate({"influx": {"url": f"http://w:{URL_PASSWORD}@db:8086"}})
    assert settings.influx.url == f"http://w:{URL_PASSWORD}@db:8086"  # used as given
    shown = [repr(settings), str(settings), repr(settings.influx), str(settings.influx)]
    assert [hits(text, [URL_PASSWORD]) for text in shown] == [[], [], [], []]
    assert "http://***@db:8086" in repr(settings.influx)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:pw@host:8086/write", "http://***@host:8086/write"),
        ("error at https://:tok@h/x and ws://a:b@c", "error at https://***@h/x and ws://***@c"),
        ("http://host:8086/write?db=gate", "http://host:8086/write?db=gate"),
        ("http://host/path@not-userinfo", "http://host/path@not-userinfo"),
        ("mail admin@example.com", "mail admin@example.com"),
    ],
)
def test_redact_url_masks_userinfo_and_nothing_else(text: str, shown: str) -> None:
    assert redact_url(text) == shown
