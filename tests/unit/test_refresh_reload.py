"""SIGHUP and ``accounts.refresh_interval``: the reload applies it, the supervisor's
discovery loop follows it from its next wait on.

Rules kept here: trio's autojump clock; the supervisor runs on a fake broker (no
sub-accounts: only the discovery rhythm is under test), its listings recorded with
their trio time; the reloader reads real config files in tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from collector.app.reload import Reloader
from collector.config import Settings, load_settings
from collector.gate.broker import BrokerClient
from collector.keys import KeyStore
from collector.points.lineproto import Bundle
from collector.supervisor.supervisor import Supervisor
from tests.unit.fakes import FakeBroker, FakeStore


def settings(tmp_path: Path, refresh: float) -> Settings:
    return Settings.model_validate(
        {"accounts": {"refresh_interval": refresh}, "state": {"dir": str(tmp_path)}}
    )


async def test_the_discovery_follows_a_new_refresh_interval_from_its_next_wait(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: Any
) -> None:
    broker = FakeBroker()
    send, receive = trio.open_memory_channel[Bundle](1)
    supervisor = Supervisor(
        settings(tmp_path, 300.0), cast(BrokerClient, broker), cast(KeyStore, FakeStore()), send
    )
    nursery.start_soon(supervisor.run)
    with trio.fail_after(10):
        await supervisor.ready.wait()
    supervisor.reload(settings(tmp_path, 10.0))
    await trio.sleep(300 + 3 * 10 + 1)
    assert broker.listings == pytest.approx([0.0, 300.0, 310.0, 320.0, 330.0])
    receive.close()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file with a refresh interval of 300 s, the environment kept out."""
    for name in [n for n in os.environ if n.startswith("GATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "collector.toml"
    path.write_text(f'[accounts]\nrefresh_interval = 300\n[state]\ndir = "{tmp_path}"\n')
    return path


async def test_a_reload_applies_a_new_refresh_interval_to_the_sessions(config: Path) -> None:
    applied: list[Settings] = []
    sink: list[Settings] = []

    async def apply_sink(new: Settings) -> None:
        sink.append(new)

    reloader = Reloader(config, load_settings(config), applied.append, apply_sink)
    config.write_text(config.read_text().replace("300", "30"))
    change = await reloader.reload()
    assert change is not None and change.live == ("accounts.refresh_interval",)
    assert change.needs_restart == ()
    assert [s.accounts.refresh_interval for s in applied] == [30.0]
    assert reloader.current.accounts.refresh_interval == 30.0
    assert sink == []
