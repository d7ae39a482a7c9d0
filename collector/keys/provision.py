"""The key lifecycle: one read-only key of the collector's own per enabled sub-account.

Rules (DESIGN section 6), each kept here so the supervisor only drives them:

* **Ownership.** A key is named ``<key_name>-<i>of<N>-<instance>``, the instance
  being a random id kept in ``state.dir``. An instance deletes only keys carrying
  its own name: never a key of another shard, of another instance of the same
  shard (another state dir), or of another tool.
* **Make before break.** A successor key is created and stored first; the old
  one is deleted only once the successor works (:meth:`KeyProvisioner.retire`).
* **Activation grace.** Gate's key changes "can take up to 5 minutes to take
  effect": a refused key younger than the grace is not dead yet.
* **Rotation.** Keys without an IP binding expire after 90 days on Gate; they are
  due for a successor after ``accounts.key_rotate_after``.
* **Exactly once.** One creation or retirement at a time per account; a create
  that finds a key stored while it waited returns that key. Before a key is
  created the account gets a durable sweep mark in the store, cleared once no key
  of ours but the stored one can be left on Gate; :meth:`KeyProvisioner.sweep_orphans`
  deletes by name, at start, what a lost answer or a kill -9 left behind.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio

from collector.base.fsutil import atomic_write
from collector.base.logging import get_logger
from collector.config import AccountsSettings
from collector.gate.broker import BrokerClient
from collector.gate.errors import GateAPIError, GateError, NotFoundError
from collector.gate.models import CreatedApiKey, KeyPermission, SubAccount
from collector.keys.store import (
    KeyStore,
    KeyStoreError,
    KeyStoreWriteError,
    StoredKey,
    write_failure,
)

log = get_logger(__name__)

# Read-only permissions of the keys the collector creates for itself by default.
# Gate's API v4 document: /unified/** needs a key "checking the unified permission";
# the Broker document lists only wallet, spot, futures, delivery and withdraw, so a
# create call that refuses "unified" is answered by creating without it.
READ_ONLY_PERMS: Final = ("wallet", "spot", "futures", "unified")
# The Broker document's names: when a refusal names several of ours, the one it does
# not list is the one refused.
BROKER_DOC_PERMS: Final = frozenset({"wallet", "spot", "futures", "delivery", "withdraw"})
INSTANCE_FILE: Final = "instance-id"


def refused_permission(error: GateAPIError, requested: list[str]) -> str | None:
    """The requested permission name a create-key refusal names, if it names exactly one.

    Only a 400 counts (a bad parameter); the name must appear as a word of Gate's
    message. When several requested names appear (a message listing the allowed
    ones), the one the Broker document does not list is taken; else None: better
    raise than drop a name on a guess.
    """
    if error.status != 400:
        return None
    words = set(re.findall(r"[a-z_]+", error.message.lower()))
    named = [name for name in requested if name.lower() in words]
    if len(named) > 1:
        named = [name for name in named if name not in BROKER_DOC_PERMS]
    return named[0] if len(named) == 1 else None


def instance_id(state_dir: Path) -> str:
    """This installation's id (8 hex digits), made once and kept in ``state_dir``.

    A damaged file is a :class:`KeyStoreError` (exit 2) naming it, not a new id made
    in silence: the id names this installation's keys on Gate, and keys under an id
    that was replaced would never be found again.
    """
    path = state_dir / INSTANCE_FILE
    try:
        text = path.read_bytes().decode("utf-8").strip()
    except FileNotFoundError:
        text = None
    except UnicodeDecodeError:
        raise KeyStoreError(_damaged(path, "not UTF-8 text")) from None
    if text is not None:
        if len(text) == 8 and all(c in "0123456789abcdef" for c in text):
            return text
        raise KeyStoreError(_damaged(path, f"{text[:20]!r} is not 8 hex digits"))
    new = secrets.token_hex(4)
    save_instance_id(state_dir, new)
    return new


def _damaged(path: Path, why: str) -> str:
    return (
        f"{path} is damaged ({why}): it holds this installation's id, which names its keys "
        "on Gate; restore it, or delete it to start with a new id (keys named with the old "
        "one are then yours to delete on Gate)"
    )


def save_instance_id(state_dir: Path, instance: str) -> None:
    """Keep ``instance`` in ``state_dir`` (OSError when it cannot be written)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(state_dir / INSTANCE_FILE, instance.encode() + b"\n", mode=0o644)


def owner_name(key_name: str, shard: str, instance: str) -> str:
    """The name that proves a key is this instance's: ``gate-collector-0of2-1a2b3c4d``."""
    index, count = shard.split("/")
    return f"{key_name}-{index}of{count}-{instance}"


@dataclass(frozen=True)
class KeyPolicy:
    """What keys look like and how long they live."""

    name: str = "gate-collector"
    permissions: tuple[str, ...] = READ_ONLY_PERMS
    ip_whitelist: tuple[str, ...] = ()
    key_type: int = 1
    activation_grace: float = 300.0
    rotate_after: float = 80 * 86400.0
    # The state dir the name's instance id is still to be written to (a full or
    # read-only disk at start): written before the first key is created.
    unsaved_instance: Path | None = None

    @classmethod
    def from_settings(cls, accounts: AccountsSettings, state_dir: Path) -> KeyPolicy:
        """The policy of this instance: its key name carries its shard and instance id."""
        unsaved = None
        try:
            instance = instance_id(state_dir)
        except OSError:  # no key is created under an id that is not kept
            instance, unsaved = secrets.token_hex(4), state_dir
        return cls(
            name=owner_name(accounts.key_name, accounts.shard, instance),
            unsaved_instance=unsaved,
            permissions=tuple(accounts.key_permissions),
            ip_whitelist=tuple(accounts.key_ip_whitelist),
            key_type=accounts.key_type,
            activation_grace=accounts.key_activation_grace,
            rotate_after=accounts.key_rotate_after,
        )

    @property
    def expires(self) -> bool:
        """Gate expires keys without an IP binding after 90 days."""
        return not self.ip_whitelist


@dataclass
class ProvisionReport:
    """What one provisioning pass did."""

    created: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


class KeyProvisioner:
    """Gives each enabled sub-account exactly one read-only key of the collector's own."""

    def __init__(
        self,
        client: BrokerClient,
        store: KeyStore,
        policy: KeyPolicy | None = None,
        concurrency: int = 8,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._store = store
        self.policy = policy or KeyPolicy()
        self._limiter = trio.CapacityLimiter(concurrency)
        self._perms = [KeyPermission(name=n, read_only=True) for n in self.policy.permissions]
        # Names Gate's create call refused (left out of every key since).
        self.refused_permissions: list[str] = []
        self._clock = wall_clock
        # Keys of an older store carry no creation time: their age counts from here.
        self._first_seen: dict[str, float] = {}
        # Keys that have delivered data: Gate activated them, a refusal means dead.
        self._working: set[str] = set()
        # Why the store cannot be written (None: it can): no key is created meanwhile.
        self._store_down: str | None = None
        self._unsaved_instance = self.policy.unsaved_instance
        # One creation or retirement at a time per account (a discovery and the slot's
        # own retry both creating when a full disk frees made two keys 2 ms apart).
        self._busy: dict[int, trio.Lock] = {}
        # Set when a key is stored for the account: a slot waiting out a backoff wakes.
        self._stored: dict[int, trio.Event] = {}

    async def ensure_keys(
        self, accounts: Iterable[SubAccount], verify: bool = False
    ) -> ProvisionReport:
        """A key for every enabled account that has none; stored keys are reused.

        With ``verify``, each stored key is looked up on Gate (one list call per
        account) and replaced when Gate no longer has it.
        """
        report = ProvisionReport()
        accounts = list(accounts)
        if any(a.enabled and self._store.get(a.gate_id) is None for a in accounts):
            await self._check_store()
        async with trio.open_nursery() as nursery:
            for account in accounts:
                if account.enabled:
                    nursery.start_soon(self._ensure_one, account.gate_id, verify, report)
        return report

    async def _ensure_one(self, user_id: int, verify: bool, report: ProvisionReport) -> None:
        async with self._limiter:
            try:
                stored = self._store.get(user_id)
                if stored is None:
                    await self.create(user_id)
                    report.created.append(user_id)
                elif verify and not await self._known_to_gate(stored):
                    await self.create(user_id)
                    await self.retire(user_id)
                    report.replaced.append(user_id)
                else:
                    report.reused.append(user_id)
            except GateError as exc:
                log.error("key_provisioning_failed", account=user_id, error=str(exc))
                report.failed[user_id] = str(exc)
            except KeyStoreWriteError as exc:
                self._store_failed(exc)
                report.failed[user_id] = f"no key: {exc}"

    # -- an unwritable store: no key churn on Gate, logged once, retried each pass ------

    async def _check_store(self) -> None:
        """Probe the store before creating keys (space may have come back)."""
        try:
            await self._store.probe_async()
        except KeyStoreWriteError as exc:
            self._store_failed(exc)
            return
        if self._store_down is not None:
            log.warning("key_store_writable_again", path=str(self._store.path))
            self._store_down = None

    def _store_failed(self, exc: KeyStoreWriteError) -> None:
        if self._store_down is None:
            log.error(
                "key_store_unwritable",
                path=str(self._store.path),
                error=str(exc),
                hint="accounts without a key get one at a later discovery once it can be written",
            )
        self._store_down = str(exc)

    def key_stored(self, user_id: int) -> trio.Event:
        """An event set the next time a key is stored for ``user_id``."""
        return self._stored.setdefault(user_id, trio.Event())

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, user_id: int) -> AsyncIterator[None]:
        lock = self._busy.setdefault(user_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._busy.pop(user_id, None)

    async def create(self, user_id: int) -> StoredKey:
        """Create a key on Gate and store it, replacing the stored one (make before break).

        The key it replaces stays on Gate until :meth:`retire`: a session may still
        use it. A key stored while this call waited for the account's turn is
        returned instead of a second one. A key of this instance that the store
        does not know (a lost answer, a run that died before storing it) is kept
        in mind by the sweep mark and removed by :meth:`retire` or, after a
        restart, :meth:`sweep_orphans`.
        """
        before = self._store.get(user_id)
        async with self._one_at_a_time(user_id):
            current = self._store.get(user_id)
            if current is not None and current != before:
                return current
            return await self._create(user_id, replaces=current)

    async def _create(self, user_id: int, replaces: StoredKey | None) -> StoredKey:
        if self._store_down is not None:  # a key whose secret cannot be kept is churn
            raise KeyStoreWriteError(self._store_down)
        self._save_instance()
        was_marked = self._store.needs_sweep(user_id)
        try:
            await self._store.mark_sweep_async(user_id)  # before Gate has the key: durably
        except KeyStoreWriteError as exc:
            self._store_failed(exc)  # said once; a later discovery probes the store again
            raise
        created = await self._create_on_gate(user_id)
        stored = StoredKey(
            user_id, created.key, created.secret.get_secret_value(), created_at=self._clock()
        )
        try:
            await self._store.put_async(stored)
        except KeyStoreWriteError as exc:
            self._store_failed(exc)
            # Its secret is lost with this process: take it off Gate again (best effort;
            # the sweep mark stays, so a start sweeps what this could not delete).
            with contextlib.suppress(GateError):
                await self._client.delete_key(user_id, created.key)
            raise
        log.info(
            "key_created",
            account=user_id,
            key=created.key,
            permissions=[p.name for p in created.perms],  # as Gate's answer echoes them
        )
        waiting = self._stored.pop(user_id, None)
        if waiting is not None:
            waiting.set()
        if replaces is None and not was_marked:  # nothing else of ours can be on Gate for it
            # A mark that cannot be cleared now costs one key listing at the next start.
            with contextlib.suppress(KeyStoreWriteError):
                await self._store.clear_sweep_async(user_id)
        return stored

    async def _create_on_gate(self, user_id: int) -> CreatedApiKey:
        """``POST /broker/sub_account_keys``; a permission name Gate refuses is left out.

        Gate's 400 naming one of the requested permissions (the Broker document
        lists fewer names than Gate's key page) drops that name for this and every
        later key, logged once; any other refusal is raised. The last name is never
        dropped: a key without permissions reads nothing.
        """
        while True:
            perms = self._perms  # concurrent creates may drop a name meanwhile
            try:
                return await self._client.create_key(
                    user_id,
                    self.policy.name,
                    perms,
                    list(self.policy.ip_whitelist),
                    key_type=self.policy.key_type,
                )
            except GateAPIError as exc:
                refused = refused_permission(exc, [p.name for p in perms])
                if refused is None or len(perms) == 1:
                    raise
                if refused in self.refused_permissions:
                    continue  # another create dropped it already (and said so)
                self._perms = [p for p in self._perms if p.name != refused]
                self.refused_permissions.append(refused)
                log.warning(
                    "key_permission_refused",
                    account=user_id,
                    permission=refused,
                    error=str(exc),
                    permissions=[p.name for p in self._perms],
                    hint=f"Gate's create-key call does not take {refused!r}: keys are "
                    "created without it; if sessions are then refused for permissions, "
                    "Gate needs it granted another way (ask Gate's broker support)",
                )

    def _save_instance(self) -> None:
        """Keep the instance id of the key name before a key carries it."""
        if self._unsaved_instance is None:
            return
        instance = self.policy.name.rsplit("-", 1)[-1]
        try:
            save_instance_id(self._unsaved_instance, instance)
        except OSError as exc:
            self._store.write_errors += 1
            raise write_failure(self._unsaved_instance / INSTANCE_FILE, exc) from None
        self._unsaved_instance = None

    async def retire(self, user_id: int) -> int:
        """Delete every key of this instance for ``user_id`` except the stored one.

        Only keys carrying this instance's name are touched; returns how many went.
        The account's sweep mark is cleared once they are gone.
        """
        async with self._one_at_a_time(user_id):
            stored = self._store.get(user_id)
            keep = stored.key if stored is not None else None
            doomed = [
                info.key
                async for info in self._client.list_keys(user_id)
                if info.name == self.policy.name and info.key != keep
            ]
            for key in doomed:
                with contextlib.suppress(NotFoundError):
                    await self._client.delete_key(user_id, key)
                log.info("key_deleted", account=user_id, key=key)
            with contextlib.suppress(KeyStoreWriteError):  # kept: swept again at the next start
                await self._store.clear_sweep_async(user_id)
        return len(doomed)

    async def sweep_orphans(self) -> int:
        """At start: for every account with a sweep mark, delete the keys of ours not stored.

        Nothing of this process uses such a key yet, so they go at once, not after
        the stored key delivered data. An account Gate no longer has is forgotten;
        one that cannot be listed now keeps its mark (its slot retires later, or the
        next start sweeps). Returns how many keys were deleted.
        """
        marked = self._store.sweeps()
        deleted = 0

        async def sweep(user_id: int) -> None:
            nonlocal deleted
            async with self._limiter:
                try:
                    deleted += await self.retire(user_id)
                except NotFoundError:  # the account is gone, and its keys with it
                    with contextlib.suppress(KeyStoreWriteError):
                        await self._store.clear_sweep_async(user_id)
                except GateError as exc:
                    log.warning("key_sweep_failed", account=user_id, error=str(exc))

        async with trio.open_nursery() as nursery:
            for user_id in marked:
                nursery.start_soon(sweep, user_id)
        if marked:
            log.info("key_orphans_swept", accounts=len(marked), deleted=deleted)
        return deleted

    def age(self, stored: StoredKey) -> float:
        """Seconds since ``stored`` was created (since first seen, for keys of older stores)."""
        created = stored.created_at or self._first_seen.setdefault(stored.key, self._clock())
        return max(0.0, self._clock() - created)

    def mark_working(self, key: str) -> None:
        """``key`` has delivered data: Gate has activated it."""
        self._working.add(key)

    def in_grace(self, stored: StoredKey) -> bool:
        """True while Gate may still be activating ``stored``: a refusal is not final.

        Only a new key that has never worked gets the grace; a key that delivered
        data and is then refused was revoked or expired.
        """
        return (
            stored.key not in self._working
            and (stored.created_at or 0.0) > 0
            and self.age(stored) < self.policy.activation_grace
        )

    def rotation_due_in(self, stored: StoredKey) -> float | None:
        """Seconds until ``stored`` needs a successor; None when it never expires."""
        if not self.policy.expires:
            return None
        return max(0.0, self.policy.rotate_after - self.age(stored))

    async def exists_on_gate(self, stored: StoredKey) -> bool:
        """Whether Gate still has ``stored`` (False once it was deleted or revoked)."""
        try:
            await self._client.get_key(stored.user_id, stored.key)
        except NotFoundError:
            return False
        return True

    async def _known_to_gate(self, stored: StoredKey) -> bool:
        async for info in self._client.list_keys(stored.user_id):
            if info.key == stored.key:
                return True
        return False
