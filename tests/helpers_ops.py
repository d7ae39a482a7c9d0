"""Shared by the operations tests (issue 24): ``gate-collector run`` as a subprocess
with its HTTP endpoint, ended by its context manager whatever the outcome."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from collector.app.commands import write_credentials
from collector.devtools.simulator import Simulator
from collector.keys import generate_master_key
from tests.servers import free_port

EXE = [sys.executable, "-m", "collector.app.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any GATE_/INFLUX_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
    env.update(extra)
    return env


@dataclass
class Running:
    """A running collector: its endpoint's URL, its process and its log."""

    url: str
    process: trio.Process
    log: Path


def collector_config(tmp: Path, sim: Simulator, influx_url: str, db: str, extra: str = "") -> Path:
    """A config for ``sim`` and ``influx_url`` with the endpoint on a free port."""
    config = tmp / "collector.toml"
    config.write_text(
        f'[gate]\nrest_url = "{sim.rest_url}"\nws_url = "{sim.ws_url}"\n'
        f'[state]\ndir = "{tmp}/state"\n'
        f'[influx]\nurl = "{influx_url}"\ndatabase = "{db}"\nflush_interval = 0.2\n'
        f'[http]\nlisten = "127.0.0.1:{free_port()}"\n{extra}'
    )
    write_credentials(tmp / "creds", sim.state.broker)
    return config


@contextlib.asynccontextmanager
async def running_collector(tmp: Path, config: Path) -> AsyncIterator[Running]:
    """``gate-collector run --config config``; SIGTERM (then SIGKILL) on the way out."""
    listen = config.read_text().split('listen = "', 1)[1].split('"', 1)[0]
    log = tmp / "collector.log"
    env = clean_env(
        CREDENTIALS_DIRECTORY=str(tmp / "creds"), GATE_COLLECTOR_MASTER_KEY=generate_master_key()
    )
    with log.open("ab") as out:
        process = await trio.lowlevel.open_process(
            [*EXE, "run", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        yield Running(f"http://{listen}", process, log)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(30):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def get_when_up(http: httpx.AsyncClient, url: str, seconds: float = 60) -> httpx.Response:
    """GET ``url`` once the server listens (within ``seconds``)."""
    with trio.fail_after(seconds):
        while True:
            try:
                return await http.get(url)
            except httpx.TransportError:
                await trio.sleep(0.1)


async def wait_ready(http: httpx.AsyncClient, url: str, seconds: float = 60) -> str:
    """Wait for ``/readyz`` to answer 200; its text."""
    with trio.fail_after(seconds):
        while True:
            answer = await get_when_up(http, f"{url}/readyz")
            if answer.status_code == 200:
                return answer.text
            await trio.sleep(0.1)
