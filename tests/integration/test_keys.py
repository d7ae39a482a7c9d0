"""The encrypted key store and provisioning: one read-only key per enabled account, once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient
from collector.keys import (
    STORE_NAME,
    KeyPolicy,
    KeyProvisioner,
    KeyStore,
    KeyStoreError,
    StoredKey,
    generate_master_key,
    instance_id,
    owner_name,
)

SECRET = "f" * 20 + "secret-that-must-not-leak" + "0" * 19


def test_store_holds_no_plaintext_secret_and_is_private(tmp_path: Path, master_key: str) -> None:
    store = KeyStore.open(tmp_path, master_key)
    store.put(StoredKey(100001, "key-1", SECRET))
    raw = (tmp_path / STORE_NAME).read_bytes()
    assert SECRET.encode() not in raw
    assert b"secret-that-must-not-leak" not in raw
    assert master_key.encode() not in raw
    assert stat.S_IMODE((tmp_path / STORE_NAME).stat().st_mode) == 0o600


def test_store_survives_a_reopen(tmp_path: Path, master_key: str) -> None:
    store = KeyStore.open(tmp_path, master_key)
    store.put(StoredKey(100001, "key-1", SECRET))
    store.put(StoredKey(100002, "key-2", "s2"))
    store.forget(100002)
    again = KeyStore.open(tmp_path, master_key)
    assert again.get(100001) == StoredKey(100001, "key-1", SECRET)
    assert again.get(100002) is None
    assert len(again) == 1


def test_stored_key_repr_hides_the_secret() -> None:
    assert SECRET not in repr(StoredKey(1, "k", SECRET))
    assert SECRET not in repr(StoredKey(1, "k", SECRET).credentials)


def test_wrong_master_key_fails_clearly_even_for_an_empty_store(
    tmp_path: Path, master_key: str
) -> None:
    KeyStore.open(tmp_path, master_key)
    with pytest.raises(KeyStoreError) as info:
        KeyStore.open(tmp_path, generate_master_key())
    message = str(info.value)
    assert "does not open" in message and "another master key" in message
    assert master_key not in message


def test_missing_master_key_is_an_error_not_a_new_store(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError) as info:
        KeyStore.open(tmp_path, None)
    assert "GATE_COLLECTOR_MASTER_KEY" in str(info.value)
    assert not (tmp_path / STORE_NAME).exists()


def test_malformed_master_key_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError) as info:
        KeyStore.open(tmp_path, "not-a-fernet-key")
    assert "genkey" in str(info.value)
    assert "not-a-fernet-key" not in str(info.value)


def test_a_torn_last_line_loses_only_that_key(tmp_path: Path, master_key: str) -> None:
    store = KeyStore.open(tmp_path, master_key)
    store.put(StoredKey(100001, "key-1", "s1"))
    store.put(StoredKey(100002, "key-2", "s2"))
    path = tmp_path / STORE_NAME
    path.write_bytes(path.read_bytes()[:-30])  # a crash in the middle of the last append
    again = KeyStore.open(tmp_path, master_key)
    assert again.get(100001) is not None
    assert again.get(100002) is None


def test_corruption_before_the_end_is_an_error(tmp_path: Path, master_key: str) -> None:
    store = KeyStore.open(tmp_path, master_key)
    store.put(StoredKey(100001, "key-1", "s1"))
    store.put(StoredKey(100002, "key-2", "s2"))
    path = tmp_path / STORE_NAME
    lines = path.read_bytes().splitlines()
    lines[1] = b"{garbage"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(KeyStoreError, match="line 2 is corrupt"):
        KeyStore.open(tmp_path, master_key)


def test_the_file_is_compacted_when_mostly_dead(tmp_path: Path, master_key: str) -> None:
    store = KeyStore.open(tmp_path, master_key)
    for round_ in range(100):
        store.put(StoredKey(1, f"key-{round_}", "s"))
    lines = (tmp_path / STORE_NAME).read_bytes().splitlines()
    assert len(lines) < 70
    assert KeyStore.open(tmp_path, master_key).get(1) == StoredKey(1, "key-99", "s")


async def test_provisioning_twice_creates_keys_once(
    broker: BrokerClient, sim: Simulator, store: KeyStore
) -> None:
    accounts = [a async for a in broker.list_sub_accounts()]
    enabled = {a.gate_id for a in accounts if a.enabled}
    provisioner = KeyProvisioner(broker, store)

    first = await provisioner.ensure_keys(accounts)
    assert set(first.created) == enabled
    assert sim.state.calls["keys_created"] == len(enabled) == 9

    calls_before = sum(sim.state.calls.values())
    second = await KeyProvisioner(broker, store).ensure_keys(accounts)
    assert second.created == []
    assert set(second.reused) == enabled
    assert sim.state.calls["keys_created"] == 9
    assert sum(sim.state.calls.values()) == calls_before  # no REST call at all


async def test_created_keys_are_read_only_and_named(
    broker: BrokerClient, sim: Simulator, store: KeyStore
) -> None:
    accounts = [a async for a in broker.list_sub_accounts()]
    await KeyProvisioner(broker, store, KeyPolicy(name="gc-test")).ensure_keys(accounts)
    for account in accounts:
        keys = sim.state.keys_of(account.gate_id)
        if not account.enabled:
            assert keys == []
            assert store.get(account.gate_id) is None
            continue
        assert len(keys) == 1
        assert keys[0].name == "gc-test"
        assert all(p["read_only"] for p in keys[0].perms)
        stored = store.get(account.gate_id)
        assert stored is not None and stored.key == keys[0].key
        assert stored.secret == keys[0].secret


async def test_a_restart_reuses_the_store_on_disk(
    broker: BrokerClient, sim: Simulator, tmp_path: Path, master_key: str
) -> None:
    accounts = [a async for a in broker.list_sub_accounts()]
    await KeyProvisioner(broker, KeyStore.open(tmp_path, master_key)).ensure_keys(accounts)
    report = await KeyProvisioner(broker, KeyStore.open(tmp_path, master_key)).ensure_keys(accounts)
    assert report.created == []
    assert sim.state.calls["keys_created"] == 9


@pytest.fixture
async def provisioner(broker: BrokerClient, store: KeyStore) -> KeyProvisioner:
    """A provisioner that has already given account 100001 its key."""
    provisioner = KeyProvisioner(broker, store)
    await provisioner.ensure_keys(
        [a async for a in broker.list_sub_accounts() if a.gate_id == 100001]
    )
    assert store.get(100001) is not None
    return provisioner


async def test_a_successor_then_retire_leaves_only_the_new_key(
    provisioner: KeyProvisioner, sim: Simulator, store: KeyStore
) -> None:
    old = store.get(100001)
    assert old is not None
    new = await provisioner.create(100001)
    assert await provisioner.retire(100001) == 1
    assert new.key != old.key
    assert store.get(100001) == new
    assert [k.key for k in sim.state.keys_of(100001)] == [new.key]


async def test_retire_copes_with_a_key_gate_already_forgot(
    provisioner: KeyProvisioner, sim: Simulator, store: KeyStore
) -> None:
    old = store.get(100001)
    assert old is not None
    sim.state.revoke(old.key)
    new = await provisioner.create(100001)
    await provisioner.retire(100001)
    assert [k.key for k in sim.state.keys_of(100001)] == [new.key]


async def test_verify_replaces_keys_revoked_on_gate(
    broker: BrokerClient, sim: Simulator, store: KeyStore
) -> None:
    accounts = [a async for a in broker.list_sub_accounts()]
    provisioner = KeyProvisioner(broker, store)
    await provisioner.ensure_keys(accounts)
    revoked = store.get(100002)
    assert revoked is not None
    sim.state.revoke(revoked.key)

    report = await provisioner.ensure_keys(accounts, verify=True)
    assert report.replaced == [100002]
    assert report.created == []
    fresh = store.get(100002)
    assert fresh is not None and fresh.key != revoked.key
    assert sim.state.calls["keys_created"] == 10


async def test_only_keys_of_this_instance_are_ever_deleted(
    broker: BrokerClient, sim: Simulator, store: KeyStore
) -> None:
    mine = owner_name("gate-collector", "0/2", "1a2b3c4d")
    # A previous run of this instance created a key but died before storing it.
    orphan = sim.state.create_key(100001, mine, [], [])
    others = [
        sim.state.create_key(100001, "trading-bot", [], []),
        sim.state.create_key(100001, owner_name("gate-collector", "0/2", "99999999"), [], []),
        sim.state.create_key(100001, owner_name("gate-collector", "1/2", "1a2b3c4d"), [], []),
        sim.state.create_key(100001, "gate-collector", [], []),  # an older version's key
    ]
    provisioner = KeyProvisioner(broker, store, KeyPolicy(name=mine))
    accounts = [a async for a in broker.list_sub_accounts() if a.gate_id == 100001]
    await provisioner.ensure_keys(accounts)
    assert await provisioner.retire(100001) == 1
    stored = store.get(100001)
    assert stored is not None
    assert {k.key for k in sim.state.keys_of(100001)} == {stored.key} | {k.key for k in others}
    assert dict(sim.state.deleted) == {orphan.key: 1}


def test_the_instance_id_is_made_once_and_kept(tmp_path: Path) -> None:
    first = instance_id(tmp_path)
    assert len(first) == 8 and int(first, 16) >= 0
    assert instance_id(tmp_path) == first
    assert instance_id(tmp_path / "elsewhere") != first
    assert owner_name("gate-collector", "0/2", first) == f"gate-collector-0of2-{first}"


async def test_keys_are_created_with_the_configured_type_perms_and_whitelist(
    broker: BrokerClient, sim: Simulator, store: KeyStore
) -> None:
    policy = KeyPolicy(
        name="gc", permissions=("unified", "spot"), ip_whitelist=("203.0.113.7",), key_type=3
    )
    provisioner = KeyProvisioner(broker, store, policy, wall_clock=sim.state.clock)
    stored = await provisioner.create(100001)
    key = sim.state.keys[stored.key]
    assert (key.type, key.ip_whitelist) == (3, ["203.0.113.7"])
    assert key.perms == [
        {"name": "unified", "read_only": True},
        {"name": "spot", "read_only": True},
    ]
    assert stored.created_at == pytest.approx(sim.state.now(), abs=2)


async def test_creation_time_survives_a_reopen(tmp_path: Path, master_key: str) -> None:
    KeyStore.open(tmp_path, master_key).put(StoredKey(1, "k", "s", created_at=1700000000.5))
    again = KeyStore.open(tmp_path, master_key).get(1)
    assert again is not None and again.created_at == 1700000000.5


def test_grace_and_rotation_follow_the_key_age() -> None:
    now = 1_000_000.0
    policy = KeyPolicy(activation_grace=300, rotate_after=80 * 86400)
    provisioner = KeyProvisioner(None, None, policy, wall_clock=lambda: now)  # type: ignore[arg-type]
    young = StoredKey(1, "k", "s", created_at=now - 299)
    old = StoredKey(1, "k", "s", created_at=now - 301)
    assert provisioner.in_grace(young) and not provisioner.in_grace(old)
    provisioner.mark_working(young.key)
    assert not provisioner.in_grace(young)  # it worked: a refusal now means revoked
    young = StoredKey(1, "k-new", "s", created_at=now - 299)
    assert provisioner.rotation_due_in(old) == pytest.approx(80 * 86400 - 301)
    ancient = StoredKey(1, "k", "s", created_at=now - 81 * 86400)
    assert provisioner.rotation_due_in(ancient) == 0
    # A key of an older store (no creation time) is not in grace; its age counts from now.
    legacy = StoredKey(1, "k2", "s")
    assert not provisioner.in_grace(legacy)
    assert provisioner.rotation_due_in(legacy) == 80 * 86400
    bound = KeyProvisioner(None, None, KeyPolicy(ip_whitelist=("10.0.0.1",)))  # type: ignore[arg-type]
    assert bound.rotation_due_in(ancient) is None  # keys bound to an IP do not expire


async def test_one_failing_account_does_not_stop_the_others(
    broker: BrokerClient, sim: Simulator, store: KeyStore
) -> None:
    accounts = [a async for a in broker.list_sub_accounts()]
    del sim.state.accounts[100003]  # vanished between listing and provisioning
    report = await KeyProvisioner(broker, store).ensure_keys(accounts)
    assert set(report.failed) == {100003}
    assert "SUB_ACCOUNT_NOT_FOUND" in report.failed[100003]
    assert len(report.created) == 8


async def test_provisioning_many_accounts_stays_under_the_rate_limit(
    broker: BrokerClient, sim: Simulator, store: KeyStore, autojump_clock: object
) -> None:
    sim.state.seed(188)  # 200 in all, 197 enabled
    sim.state.rate_limit = 80
    accounts = [a async for a in broker.list_sub_accounts()]
    report = await KeyProvisioner(broker, store).ensure_keys(accounts)
    assert len(report.created) == 197
    assert report.failed == {}
    assert len(store) == 197
