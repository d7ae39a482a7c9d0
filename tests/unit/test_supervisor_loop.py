"""The supervisor's loop on fakes: discovery, the shard's accounts, SIGHUP's session changes.

Rules kept here: trio's autojump clock; a fake broker lists the sub-accounts (each
listing recorded with its trio time); every account already has a stored key (a fake
store), so no key is created; sessions are the fakes of tests/unit/fakes.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from collector.config import Settings
from collector.gate.broker import BrokerClient
from collector.gate.errors import ServerError
from collector.keys import KeyStore, StoredKey
from collector.points.lineproto import Bundle
from collector.supervisor.placement import owns
from collector.supervisor.supervisor import StartupError, Supervisor
from tests.unit.fakes import FakeBroker, FakeSessions, FakeStore, account

REFRESH = 100.0


@dataclass
class Running:
    """A supervisor running on fakes."""

    supervisor: Supervisor
    broker: FakeBroker
    sessions: FakeSessions
    settings: Settings

    def live(self) -> list[int]:
        """Accounts with a session running now."""
        return sorted({r.account for r in self.sessions.runs if r.ended is None})


def settings(tmp_path: Path, **gate: Any) -> Settings:
    return Settings.model_validate(
        {
            "gate": gate,
            "accounts": {"refresh_interval": REFRESH},
            "state": {"dir": str(tmp_path)},
        }
    )


async def start(
    tmp_path: Path, nursery: trio.Nursery, ids: list[int], broker: FakeBroker | None = None
) -> Running:
    broker = broker or FakeBroker({i: account(i) for i in ids})
    store = FakeStore()
    for i in range(1, 10):  # accounts that come later have their key too: none is created
        store.put(StoredKey(i, f"stored{i}", "secret"))  # no age: no rotation due
    sessions = FakeSessions()
    send, _ = trio.open_memory_channel[Bundle](10)
    config = settings(tmp_path)
    supervisor = Supervisor(
        config,
        cast(BrokerClient, broker),
        cast(KeyStore, store),
        send,
        session_factory=cast(Any, sessions),
    )
    nursery.start_soon(supervisor.run)
    with trio.fail_after(10):
        await supervisor.ready.wait()
    await trio.sleep(5)  # every session delivered
    return Running(supervisor, broker, sessions, config)


@pytest.fixture
async def running(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Running]:
    """Four enabled accounts, one session each."""
    yield await start(tmp_path, nursery, [1, 2, 3, 4])


async def test_a_first_discovery_that_fails_stops_the_start(
    tmp_path: Path, autojump_clock: Any
) -> None:
    broker = FakeBroker(list_failures=[ServerError(502, "BAD_GATEWAY", "down")])
    send, _ = trio.open_memory_channel[Bundle](1)
    supervisor = Supervisor(
        settings(tmp_path), cast(BrokerClient, broker), cast(KeyStore, FakeStore()), send
    )
    with pytest.raises(StartupError, match="cannot list sub-accounts at start"):
        await supervisor.run()


async def test_every_enabled_account_gets_a_session(running: Running, autojump_clock: Any) -> None:
    assert running.live() == [1, 2, 3, 4]
    assert running.supervisor.ready.is_set()


async def test_accounts_that_left_or_were_disabled_lose_their_session_new_ones_get_one(
    running: Running, autojump_clock: Any
) -> None:
    del running.broker.accounts[2]
    running.broker.accounts[3] = account(3, status="disabled")
    running.broker.accounts[5] = account(5)
    await trio.sleep(REFRESH + 1)
    assert running.live() == [1, 4, 5]


async def test_a_failed_discovery_is_counted_and_the_sessions_kept(
    running: Running, autojump_clock: Any
) -> None:
    running.broker.list_failures.append(ServerError(502, "BAD_GATEWAY", "down"))
    await trio.sleep(REFRESH + 1)
    assert running.supervisor.stats.discovery_errors == 1
    assert running.live() == [1, 2, 3, 4]
    running.broker.accounts[5] = account(5)
    await trio.sleep(REFRESH)  # the next refresh goes on
    assert running.live() == [1, 2, 3, 4, 5]
    assert running.supervisor.stats.discoveries == 2


async def test_only_the_accounts_of_this_shard_get_a_session(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: Any
) -> None:
    ids = list(range(1, 21))
    broker = FakeBroker({i: account(i) for i in ids})
    store = FakeStore()
    sessions = FakeSessions()
    send, _ = trio.open_memory_channel[Bundle](10)
    config = Settings.model_validate(
        {"accounts": {"shard": "1/3"}, "state": {"dir": str(tmp_path)}}
    )
    for i in ids:
        store.put(StoredKey(i, f"stored{i}", "secret"))
    supervisor = Supervisor(
        config,
        cast(BrokerClient, broker),
        cast(KeyStore, store),
        send,
        session_factory=cast(Any, sessions),
    )
    nursery.start_soon(supervisor.run)
    await trio.sleep(1)
    mine = [i for i in ids if owns(i, 1, 3)]
    assert 0 < len(mine) < len(ids)
    assert sorted({r.account for r in sessions.runs}) == mine


async def test_new_currencies_reach_every_session_without_a_reconnect(
    running: Running, autojump_clock: Any
) -> None:
    new = running.settings.model_copy(
        update={"gate": running.settings.gate.model_copy(update={"currencies": ["BTC"]})}
    )
    running.supervisor.reload(new)
    assert [s.currency_changes for s in running.sessions.made] == [1, 1, 1, 1]
    assert len(running.sessions.runs) == 4


async def test_a_new_ws_url_restarts_every_session_with_its_counters(
    running: Running, autojump_clock: Any
) -> None:
    before = {a: s.points for a, s in running.supervisor.session_stats().items()}
    new = running.settings.model_copy(
        update={"gate": running.settings.gate.model_copy(update={"ws_url": "wss://elsewhere"})}
    )
    running.supervisor.reload(new)
    await trio.sleep(5)
    assert len(running.sessions.runs) == 8 and running.live() == [1, 2, 3, 4]
    after = running.supervisor.session_stats()
    assert all(after[a].points > before[a] > 0 for a in before)
