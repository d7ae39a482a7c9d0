"""The key store survives what breaks: torn tails, short writes, full and read-only disks.

Real files throughout; the full and read-only disks are small tmpfs mounts (the
tests run as root), always unmounted in a ``finally``.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
import trio

from collector.config import Settings
from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient
from collector.keys import (
    STORE_NAME,
    KeyProvisioner,
    KeyStore,
    KeyStoreCorrupt,
    KeyStoreWriteError,
    StoredKey,
)
from collector.keys.repair import repair_store
from collector.points.lineproto import Point
from collector.supervisor.supervisor import Supervisor
from tests.helpers import mounted_tmpfs


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def stored_keys(n: int) -> list[StoredKey]:
    return [StoredKey(100001 + i, f"key-{i}", f"secret-{i}") for i in range(n)]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a disk that fills up after a few dozen key lines."""
    with mounted_tmpfs(tmp_path / "small-disk", "64k") as mount:
        yield mount


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; the filler file is returned."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (4096, 1):
            while True:
                try:
                    os.write(fd, bytes(size))
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


# -- torn tails ------------------------------------------------------------------------


def test_a_torn_tail_is_cut_before_the_next_append(tmp_path: Path, master_key: str) -> None:
    store = KeyStore.open(tmp_path, master_key)
    first, second, third = stored_keys(3)
    store.put(first)
    store.put(second)
    path = tmp_path / STORE_NAME
    whole = path.read_bytes()
    path.write_bytes(whole[:-20])  # the crash: the last append got only part-way

    again = KeyStore.open(tmp_path, master_key)
    assert again.get(second.user_id) is None
    again.put(third)

    assert path.read_bytes() == whole[: whole.rindex(b"\n", 0, -1) + 1] + lines_of(path)[-1]
    reopened = KeyStore.open(tmp_path, master_key)
    assert [k.user_id for k in reopened.all()] == [first.user_id, third.user_id]
    assert all(line.endswith(b"\n") for line in lines_of(path))


@pytest.mark.parametrize("cut", [0, 1, 10, 30])
def test_a_store_torn_while_being_created_opens_empty(
    tmp_path: Path, master_key: str, cut: int
) -> None:
    KeyStore.open(tmp_path, master_key)
    path = tmp_path / STORE_NAME
    path.write_bytes(path.read_bytes()[:cut])
    store = KeyStore.open(tmp_path, master_key)
    assert len(store) == 0
    store.put(stored_keys(1)[0])
    assert len(KeyStore.open(tmp_path, master_key)) == 1


def test_a_key_is_only_stored_with_its_newline(tmp_path: Path, master_key: str) -> None:
    """A whole JSON line without its newline is an append that never returned."""
    store = KeyStore.open(tmp_path, master_key)
    store.put(stored_keys(1)[0])
    path = tmp_path / STORE_NAME
    path.write_bytes(path.read_bytes()[:-1])
    assert KeyStore.open(tmp_path, master_key).get(100001) is None


async def test_a_torn_tail_at_every_byte_survives_three_restarts(
    broker: BrokerClient, sim: Simulator, tmp_path: Path, master_key: str
) -> None:
    sim.state.rate_limit = 100_000
    accounts = [a async for a in broker.list_sub_accounts()]
    state = tmp_path / "state"
    await KeyProvisioner(broker, KeyStore.open(state, master_key)).ensure_keys(accounts)
    assert sim.state.calls["keys_created"] == 9
    path = state / STORE_NAME
    whole = path.read_bytes()
    last = [line for line in lines_of(path) if b'"secret"' in line][-1]  # the last key line
    torn_account = int(last.split(b'"user_id":')[1].split(b",")[0])
    start = whole.rindex(last)

    for offset in range(len(last)):
        path.write_bytes(whole[: start + offset])  # torn there (its sweep mark is before it)
        created_before = sim.state.calls["keys_created"]
        for restart in range(3):
            store = KeyStore.open(state, master_key)  # every run opens the store
            provisioner = KeyProvisioner(broker, store)
            report = await provisioner.ensure_keys(accounts)
            assert report.created == ([torn_account] if restart == 0 else []), offset
            assert report.failed == {}
            # The key the torn line lost is an orphan of this instance: retired as the
            # supervisor does once the fresh key works (make before break).
            for account in report.created:
                assert await provisioner.retire(account) == 1, offset
        assert sim.state.calls["keys_created"] == created_before + 1, offset
        final = KeyStore.open(state, master_key)
        assert len(final) == 9
        on_gate = {k.key for k in sim.state.keys_of(torn_account)}
        stored = final.get(torn_account)
        assert stored is not None and on_gate == {stored.key}  # the orphan went too
        assert all(line.endswith(b"\n") for line in lines_of(path))


# -- short writes ----------------------------------------------------------------------


def test_writes_of_one_byte_at_a_time_still_store_every_key(
    tmp_path: Path, master_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls = 0

    def one_byte(fd: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        return real_write(fd, bytes(data[:1]))

    monkeypatch.setattr(os, "write", one_byte)
    store = KeyStore.open(tmp_path, master_key)
    for round_ in range(80):  # past the compaction threshold: both write paths
        for key in stored_keys(3):
            store.put(StoredKey(key.user_id, f"{key.key}-{round_}", key.secret))
    monkeypatch.undo()

    assert calls > 80 * 3 * 100  # it really wrote byte by byte
    again = KeyStore.open(tmp_path, master_key)
    assert {k.user_id: k.key for k in again.all()} == {
        100001: "key-0-79",
        100002: "key-1-79",
        100003: "key-2-79",
    }


# -- full and read-only disks ------------------------------------------------------------


def test_a_full_disk_fails_loudly_and_stores_nothing(tmpfs: Path, master_key: str) -> None:
    store = KeyStore.open(tmpfs, master_key)
    filler = fill(tmpfs)
    keys = stored_keys(40)  # the store's last page has room for a few lines, not 40
    with pytest.raises(KeyStoreWriteError) as info:
        for key in keys:
            before = (tmpfs / STORE_NAME).read_bytes()
            store.put(key)
    assert "No space left on device" in str(info.value)
    assert str(tmpfs / STORE_NAME) in str(info.value) and "free space" in str(info.value)
    stored = len(store)
    assert store.get(keys[stored].user_id) is None  # the failed one is not in memory
    assert (tmpfs / STORE_NAME).read_bytes() == before  # nor half on disk
    assert store.write_errors == 1
    with pytest.raises(KeyStoreWriteError):
        store.probe()

    filler.unlink()
    store.probe()
    for key in keys[stored:]:
        store.put(key)
    assert len(KeyStore.open(tmpfs, master_key)) == 40


def test_a_new_store_on_a_read_only_disk_is_a_clear_error(tmpfs: Path, master_key: str) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(KeyStoreWriteError) as info:
        KeyStore.open(tmpfs, master_key)
    assert "Read-only file system" in str(info.value) and "read-write" in str(info.value)
    assert "\n" not in str(info.value)


def test_an_existing_store_on_a_read_only_disk_opens_for_reading(
    tmpfs: Path, master_key: str
) -> None:
    KeyStore.open(tmpfs, master_key).put(stored_keys(1)[0])
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    store = KeyStore.open(tmpfs, master_key)
    assert store.get(100001) is not None
    with pytest.raises(KeyStoreWriteError, match="read-only"):
        store.probe()
    assert stat.S_IMODE((tmpfs / STORE_NAME).stat().st_mode) == 0o600


# -- corruption before the end -----------------------------------------------------------


def test_a_corrupt_middle_line_names_the_line_and_the_repair(
    tmp_path: Path, master_key: str
) -> None:
    store = KeyStore.open(tmp_path, master_key)
    for key in stored_keys(3):
        store.put(key)
    path = tmp_path / STORE_NAME
    lines = lines_of(path)
    lines[2] = b"{garbage\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(KeyStoreCorrupt) as info:
        KeyStore.open(tmp_path, master_key)
    assert info.value.line == 3
    assert "line 3 is corrupt" in str(info.value)
    assert "gate-collector keys repair --config" in str(info.value)


# -- provisioning on a full disk ----------------------------------------------------------


async def test_a_full_disk_creates_no_key_on_gate_and_recovers(
    broker: BrokerClient, sim: Simulator, tmpfs: Path, master_key: str
) -> None:
    accounts = [a async for a in broker.list_sub_accounts()]
    enabled = {a.gate_id for a in accounts if a.enabled}
    store = KeyStore.open(tmpfs, master_key)
    provisioner = KeyProvisioner(broker, store)
    filler = fill(tmpfs)

    with structlog.testing.capture_logs() as logs:
        for _attempt in range(3):
            report = await provisioner.ensure_keys(accounts)
            assert report.created == []
            assert set(report.failed) == enabled
            assert all("No space left" in reason for reason in report.failed.values())
    assert sim.state.calls["keys_created"] == 0
    assert [e["event"] for e in logs].count("key_store_unwritable") == 1  # logged once
    assert store.write_errors == 3  # counted every time

    filler.unlink()
    report = await provisioner.ensure_keys(accounts)
    assert set(report.created) == enabled
    assert sim.state.calls["keys_created"] == len(enabled)
    assert len(KeyStore.open(tmpfs, master_key)) == len(enabled)


async def test_a_disk_filling_up_mid_pass_leaves_no_key_on_gate_without_its_secret(
    broker: BrokerClient, sim: Simulator, tmpfs: Path, master_key: str
) -> None:
    sim.state.seed(88)  # 100 accounts: more key lines than the small disk has room for
    sim.state.rate_limit = 100_000  # what is tested here is the disk, not Gate's limits
    accounts = [a async for a in broker.list_sub_accounts()]
    enabled = {a.gate_id for a in accounts if a.enabled}
    store = KeyStore.open(tmpfs, master_key)
    provisioner = KeyProvisioner(broker, store)
    filler = fill(tmpfs)
    os.truncate(filler, filler.stat().st_size - 8192)  # room for a few dozen key lines

    for _attempt in range(3):
        report = await provisioner.ensure_keys(accounts)
        ours_on_gate = {k.key for k in sim.state.keys.values() if k.name == "gate-collector"}
        assert ours_on_gate == {k.key for k in store.all()}  # no key without its secret
        assert set(report.failed) == enabled - {k.user_id for k in store.all()}
    assert 0 < len(store) < len(enabled)  # the disk really filled up mid-pass
    # Only the first pass could race the filling disk: at most one key per slot in flight.
    assert sim.state.calls["keys_created"] <= len(store) + 8
    assert len(KeyStore.open(tmpfs, master_key)) == len(store)


# -- the operator's commands ---------------------------------------------------------------


def cli(args: list[str], master_key: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
    env["GATE_COLLECTOR_MASTER_KEY"] = master_key
    return subprocess.run(
        [sys.executable, "-m", "collector.app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose state.dir is ``tmp_path/state`` (Gate and InfluxDB are never reached)."""
    path = tmp_path / "collector.toml"
    path.write_text(
        f'[gate]\nrest_url = "http://127.0.0.1:1"\n[state]\ndir = "{tmp_path}/state"\n'
        '[influx]\nurl = "http://127.0.0.1:1"\n'
    )
    return path


def garbled_store(state: Path, master_key: str, keys: list[StoredKey], line: int) -> Path:
    store = KeyStore.open(state, master_key)
    for key in keys:
        store.put(key)
    path = state / STORE_NAME
    lines = lines_of(path)
    lines[line - 1] = lines[line - 1][:25] + b"\x00\x17garbled\n"  # keeps its user_id
    path.write_bytes(b"".join(lines))
    return path


def test_the_daemon_names_the_corrupt_line_and_the_repair_command(
    tmp_path: Path, config: Path, master_key: str
) -> None:
    garbled_store(tmp_path / "state", master_key, stored_keys(4), line=3)
    result = cli(["run", "--config", str(config)], master_key)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1  # one plain line, no traceback
    assert "keys.jsonl line 3 is corrupt" in result.stderr
    assert "gate-collector keys repair --config" in result.stderr


def test_keys_repair_keeps_the_readable_keys_and_names_the_lost_account(
    tmp_path: Path, config: Path, master_key: str
) -> None:
    keys = stored_keys(4)
    path = garbled_store(tmp_path / "state", master_key, keys, line=3)  # keys[1]'s line
    old = path.read_bytes()

    result = cli(["keys", "repair", "--config", str(config)], master_key)
    assert result.returncode == 0, result.stderr
    assert "kept 3 keys" in result.stdout
    assert "line 3 unreadable" in result.stdout
    assert f"lost their key: {keys[1].user_id};" in result.stdout
    backups = list(path.parent.glob(f"{STORE_NAME}.bad-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == old
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    repaired = KeyStore.open(path.parent, master_key)
    assert sorted(k.user_id for k in repaired.all()) == [
        keys[0].user_id,
        keys[2].user_id,
        keys[3].user_id,
    ]
    assert repaired.get(keys[3].user_id) == keys[3]

    again = cli(["keys", "repair", "--config", str(config)], master_key)
    assert again.returncode == 0 and "intact: 3 keys" in again.stdout


def test_keys_repair_salvages_an_append_written_onto_a_torn_line(
    tmp_path: Path, master_key: str
) -> None:
    """What older versions left: a torn line, then the next append glued onto it."""
    state = tmp_path / "state"
    keys = stored_keys(4)
    store = KeyStore.open(state, master_key)
    for key in keys:
        store.put(key)
    path = state / STORE_NAME
    lines = lines_of(path)
    glued = lines[2][:40] + lines[3]  # keys[1] torn at byte 40, keys[2] written onto it
    path.write_bytes(b"".join([*lines[:2], glued, lines[4]]))
    with pytest.raises(KeyStoreCorrupt):
        KeyStore.open(state, master_key)

    report = repair_store(path, master_key)
    assert [(b.line, b.account) for b in report.bad] == [(3, keys[1].user_id)]
    assert report.lost_accounts == [keys[1].user_id]
    repaired = KeyStore.open(state, master_key)
    assert repaired.get(keys[2].user_id) == keys[2]
    assert len(repaired) == 3


def test_keys_list_shows_ids_and_times_never_secrets(
    tmp_path: Path, config: Path, master_key: str
) -> None:
    store = KeyStore.open(tmp_path / "state", master_key)
    secret = "s" * 30 + "must-not-show"
    store.put(StoredKey(100007, "key-of-100007", secret, created_at=1_700_000_000))
    result = cli(["keys", "list", "--config", str(config)], master_key)
    assert result.returncode == 0, result.stderr
    assert "100007" in result.stdout and "key-of-100007" in result.stdout
    assert "2023-11-14 22:13:20" in result.stdout
    assert "must-not-show" not in result.stdout + result.stderr
    assert "1 keys in" in result.stdout


def test_keys_commands_without_a_master_key_are_one_plain_line(
    tmp_path: Path, config: Path
) -> None:
    result = cli(["keys", "list", "--config", str(config)], "")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no master key" in result.stderr


# -- the running collector on a full disk ------------------------------------------------------


async def test_a_full_disk_keeps_the_running_sessions_and_provisions_once_space_returns(
    real_clock_sim: Simulator,
    tmpfs: Path,
    master_key: str,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
) -> None:
    sim = real_clock_sim  # the supervisor's sessions sign with time.time()
    broker = BrokerClient(http, sim.state.broker, base_url=sim.rest_url)
    store = KeyStore.open(tmpfs, master_key)
    accounts = [a async for a in broker.list_sub_accounts()]
    enabled = {a.gate_id for a in accounts if a.enabled}
    keyed = sorted(enabled)[:4]
    await KeyProvisioner(broker, store).ensure_keys([a for a in accounts if a.gate_id in keyed])
    filler = fill(tmpfs)

    settings = Settings.model_validate(
        {
            "gate": {"rest_url": sim.rest_url, "ws_url": sim.ws_url},
            "state": {"dir": str(tmpfs)},
        }
    )
    send, receive = trio.open_memory_channel[list[Point]](10_000)

    async def drain() -> None:
        async for _ in receive:
            pass

    supervisor = Supervisor(settings, broker, store, send)
    nursery.start_soon(drain)
    nursery.start_soon(supervisor.run)
    with trio.fail_after(30):
        await supervisor.ready.wait()
        while sum(sim.state.active.values()) < 2 * len(keyed):  # both channels each
            await trio.sleep(0.05)
    # Every enabled account has its slot; those without a key wait keyless, retried.
    assert set(supervisor.session_stats()) == enabled
    assert set(supervisor.stats.keyless) == enabled - set(keyed)
    for _refresh in range(2):
        await supervisor.refresh()
    assert sim.state.calls["keys_created"] == len(keyed)  # no churn on Gate
    assert supervisor.stats_fields()["key_store_write_errors"] == 3
    assert sum(sim.state.active.values()) == 2 * len(keyed)  # still subscribed
    assert all(supervisor.session_stats()[a].connected for a in keyed)

    filler.unlink()
    await supervisor.refresh()
    assert set(supervisor.session_stats()) == enabled and supervisor.stats.keyless == {}
    assert sim.state.calls["keys_created"] == len(enabled)
    # The instance id the full disk kept from being written went down before the keys.
    instance = (tmpfs / "instance-id").read_text().strip()
    assert supervisor.key_name == f"gate-collector-0of1-{instance}"
    with trio.fail_after(30):
        while sum(sim.state.active.values()) < 2 * len(enabled):
            await trio.sleep(0.05)
