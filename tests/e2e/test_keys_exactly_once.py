"""Keys exactly once: one key of ours per account on Gate, through kill -9 and full disks.

A key whose create answer was lost, or whose secret never reached the store, is
found by name at the next start and deleted (the sweep mark written before each
creation says which accounts to look at); two creations for one account never
run at once; a slot waiting out its backoff connects as soon as its key is stored.
The real daemon is killed with SIGKILL while Gate (the simulator, slowed) is still
answering its key creations; the in-process tests run on the autojump clock.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from collector.config import Settings
from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient, RetryPolicy
from collector.keys import KeyPolicy, KeyProvisioner, KeyStore
from collector.keys.repair import repair_store
from collector.keys.store import STORE_NAME
from collector.points.lineproto import Bundle
from collector.supervisor.supervisor import Supervisor
from tests.helpers import DaemonProcess, killed_at_end, mounted_tmpfs, wait_until
from tests.servers import InfluxServer

KILLS = 6
ACCOUNTS = 100
SEED = 21


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    with killed_at_end() as started:
        yield started


def ours(sim: Simulator, account: int, name: str) -> list[str]:
    return [k.key for k in sim.state.keys_of(account) if k.name == name]


# -- the store's sweep marks ------------------------------------------------------------


def test_a_sweep_mark_survives_a_reopen_a_compaction_and_a_repair(
    tmp_path: Path, master_key: str
) -> None:
    store = KeyStore.open(tmp_path, master_key)
    store.mark_sweep(100001)
    store.mark_sweep(100002)
    store.clear_sweep(100002)
    assert KeyStore.open(tmp_path, master_key).sweeps() == [100001]
    for i in range(200):  # dead lines pile up: the store compacts itself
        store.mark_sweep(200000 + i)
        store.clear_sweep(200000 + i)
    lines = (tmp_path / STORE_NAME).read_bytes().count(b"\n")
    assert lines < 100  # compacted (400 appends)
    assert KeyStore.open(tmp_path, master_key).sweeps() == [100001]
    with (tmp_path / STORE_NAME).open("ab") as f:  # a bad line before the last
        f.write(b"garbage\n" + b'{"user_id": 100003, "sweep": true}\n')
    assert repair_store(tmp_path / STORE_NAME, master_key).changed
    assert sorted(KeyStore.open(tmp_path, master_key).sweeps()) == [100001, 100003]


# -- in-process, on the autojump clock ---------------------------------------------------


@dataclass
class Parts:
    sim: Simulator
    broker: BrokerClient


@pytest.fixture
async def parts(
    nursery: trio.Nursery, http: httpx.AsyncClient, wall_clock: Callable[[], float]
) -> Parts:
    sim = Simulator.create(accounts=6, clock=wall_clock)
    sim.state.rate_limit = 100_000
    await sim.start(nursery)
    broker = BrokerClient(
        http,
        sim.state.broker,
        base_url=sim.rest_url,
        wall_clock=wall_clock,
        retry=RetryPolicy(base_delay=0.1, max_delay=1.0),
    )
    return Parts(sim, broker)


def quick_store(path: Path, master_key: str) -> KeyStore:
    store = KeyStore.open(path, master_key)
    store.io_in_thread = False  # autojump clock: no thread may run while it jumps
    return store


async def test_two_creations_for_one_account_at_once_make_one_key(
    parts: Parts, tmp_path: Path, master_key: str, autojump_clock: trio.testing.MockClock
) -> None:
    parts.sim.state.key_create_delay = 1.0
    provisioner = KeyProvisioner(parts.broker, quick_store(tmp_path, master_key))
    got = []
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(lambda: _append(got, provisioner.create(100001)))
    assert parts.sim.state.calls["keys_created"] == 1
    assert len(ours(parts.sim, 100001, provisioner.policy.name)) == 1
    assert got[0] == got[1] == got[2]


async def _append(into: list[Any], call: Any) -> None:
    into.append(await call)


async def test_a_lost_create_answer_is_swept_by_name_at_the_next_start(
    parts: Parts, tmp_path: Path, master_key: str, autojump_clock: trio.testing.MockClock
) -> None:
    sim = parts.sim
    first = KeyProvisioner(parts.broker, quick_store(tmp_path, master_key))
    name = first.policy.name
    sim.state.faults.append(_lost_answer())
    with pytest.raises(Exception, match="Gate"):
        await first.create(100001)  # made on Gate, the answer never came
    await first.create(100001)  # the retry: a second key, stored
    assert len(ours(sim, 100001, name)) == 2
    # The process dies before any upkeep; the next start sweeps the marked account.
    store = quick_store(tmp_path, master_key)
    again = KeyProvisioner(parts.broker, store, KeyPolicy(name=name))
    assert store.sweeps() == [100001]
    assert await again.sweep_orphans() == 1
    stored = store.get(100001)
    assert stored is not None and ours(sim, 100001, name) == [stored.key]
    assert store.sweeps() == []
    assert await again.sweep_orphans() == 0  # nothing left to look at: no listing
    assert sim.state.calls["GET keys"] == 1


def _lost_answer() -> Any:
    from collector.devtools.simulator.state import Fault

    return Fault("/broker/sub_account_keys", count=1, drop_response=True, method="POST")


# -- a full disk that frees --------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs for state.dir (a disk that fills up), unmounted at the end."""
    with mounted_tmpfs(tmp_path / "small-disk", "64k") as mount:
        yield mount


def fill(directory: Path) -> Path:
    """Fill ``directory``'s filesystem to the last byte; the filler file is returned."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (4096, 1):
            try:
                while True:
                    out.write(bytes(size))
            except OSError:
                pass
    return filler


@pytest.fixture
async def supervisor_on(
    parts: Parts, nursery: trio.Nursery, wall_clock: Callable[[], float]
) -> AsyncIterator[Callable[[KeyStore, Path], Any]]:
    async def start(store: KeyStore, state: Path) -> Supervisor:
        settings = Settings.model_validate(
            {
                "gate": {"rest_url": parts.sim.rest_url, "ws_url": parts.sim.ws_url},
                "accounts": {"refresh_interval": 60.0, "snapshot_interval": 0},
                "state": {"dir": str(state)},
            }
        )
        send, receive = trio.open_memory_channel[Bundle](100_000)

        async def drain() -> None:
            async for _ in receive:
                pass

        supervisor = Supervisor(settings, parts.broker, store, send, wall_clock=wall_clock)
        nursery.start_soon(drain)
        nursery.start_soon(supervisor.run)
        with trio.fail_after(60):
            await supervisor.ready.wait()
        return supervisor

    yield start


async def test_when_a_full_disk_frees_each_account_gets_one_key_and_connects_at_once(
    parts: Parts,
    small_disk: Path,
    master_key: str,
    supervisor_on: Callable[[KeyStore, Path], Any],
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = parts.sim
    store = quick_store(small_disk, master_key)
    filler = fill(small_disk)
    with capture_logs() as logs:
        supervisor = await supervisor_on(store, small_disk)
        await trio.sleep(100.0)  # every slot keyless, its retries backing off (5 s, 10 s, ...)
    said = Counter(e["event"] for e in logs if e["log_level"] in ("warning", "error"))
    assert said == {"key_store_unwritable": 1}  # once for all accounts and retries
    assert sim.state.calls["keys_created"] == 0
    assert supervisor.stats.key_errors >= 6 * 3
    filler.unlink()
    freed = trio.current_time()
    # The next discovery (every 60 s) provisions the keyless accounts.
    await wait_until(lambda: sim.state.calls["keys_created"] == 6, 120, "keys after the disk freed")
    stored_at = trio.current_time()
    # At once: the slots were waiting out 20-80 s backoffs when the keys came.
    await wait_until(lambda: sum(sim.state.active.values()) == 12, 1.0, "subscribed at once")
    assert stored_at - freed <= 60.0
    await trio.sleep(1000.0)  # every retry and upkeep has had its turn
    assert sim.state.calls["keys_created"] == 6
    for account in sim.state.accounts:
        assert len(ours(sim, account, supervisor.key_name)) == 1


# -- the real daemon, killed while Gate answers its key creations --------------------------


async def test_kill_9_during_key_creation_leaves_one_key_per_account_after_the_next_start(
    nursery: trio.Nursery,
    influxdb: InfluxServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
) -> None:
    sim = Simulator.create(accounts=ACCOUNTS)
    sim.state.rate_limit = 100_000
    sim.state.key_create_delay = 0.5  # the key is made at once; its answer takes 0.5 s
    await sim.start(nursery)
    accounts = set(sim.state.accounts)
    daemon = DaemonProcess(
        tmp_path, sim.rest_url, sim.ws_url, sim.state.broker, influxdb.url, "keys_once"
    )
    daemons.append(daemon)
    rng = random.Random(SEED)
    for _ in range(KILLS):
        before = sim.state.calls["keys_created"]
        await daemon.start()
        # Killed at a random moment after this run's first key was made: answers in
        # flight, some keys stored, some not (8 creations at a time, 0.5 s each).
        await wait_until(lambda b=before: sim.state.calls["keys_created"] > b, 60, "a key made")  # type: ignore[misc]
        await trio.sleep(rng.uniform(0, 1.2))
        await daemon.kill()
    made = sim.state.calls["keys_created"]
    name = _key_name(daemon)
    left = KeyStore.open(tmp_path / "state", daemon.master_key)  # what the kills left stored
    stored, marked = len(left), len(left.sweeps())
    orphans = sum(len(ours(sim, a, name)) for a in accounts) - stored  # on Gate, not stored
    sim.state.key_create_delay = 0
    await daemon.start()
    await wait_until(lambda: all(sim.state.active[a] == 2 for a in accounts), 60, "subscribed")
    await wait_until(
        lambda: all(len(ours(sim, a, name)) == 1 for a in accounts), 30, "one key per account"
    )
    for account in accounts:  # the key left is the one the sessions use
        (key,) = ours(sim, account, name)
        assert sim.state.keys_in_use[key] > 0
    assert await daemon.stop() == 0
    print(
        f"kill -9 x{KILLS}: {made} keys made, {stored} stored, {orphans} orphans on Gate, "
        f"{marked} accounts marked; after the next start: "
        f"{sum(len(sim.state.keys_of(a)) for a in accounts)} keys for {len(accounts)} accounts"
    )
    assert orphans > 0 and 0 < stored < len(accounts)  # kills before and after keys were stored
    assert sum(len(sim.state.keys_of(a)) for a in accounts) == len(accounts)
    made_in_all = sim.state.calls["keys_created"]
    assert made_in_all == made + len(accounts) - stored  # the next start made only the missing
    assert sum(sim.state.deleted.values()) == made_in_all - len(accounts)  # all others deleted
    assert daemon.events("key_orphans_swept")


def _key_name(daemon: DaemonProcess) -> str:
    instance = (daemon.root / "state" / "instance-id").read_text().strip()
    return f"gate-collector-0of1-{instance}"
