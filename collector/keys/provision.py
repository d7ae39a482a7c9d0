"""The key lifecycle: one read-only key of the collector's own per enabled sub-account."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import trio

from collector.gate.broker import BrokerClient
from collector.gate.errors import GateAPIError, GateError, NotFoundError
from collector.gate.models import KeyPermission, SubAccount
from collector.keys.store import KeyStore, KeyStoreWriteError, StoredKey
from collector.logging import get_logger

log = get_logger(__name__)

# Read-only permissions of the keys the collector creates for itself.
READ_ONLY_PERMS: Final = ("wallet", "spot", "futures")


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
        key_name: str = "gate-collector",
        concurrency: int = 8,
    ) -> None:
        self._client = client
        self._store = store
        self._key_name = key_name
        self._limiter = trio.CapacityLimiter(concurrency)
        self._perms = [KeyPermission(name=name, read_only=True) for name in READ_ONLY_PERMS]
        # Why the store cannot be written (None: it can): no key is created meanwhile.
        self._store_down: str | None = None

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
                    await self._create(user_id, cleanup_orphans=True)
                    report.created.append(user_id)
                elif verify and not await self._known_to_gate(stored):
                    await self.replace(user_id, reason="not found on Gate")
                    report.replaced.append(user_id)
                else:
                    report.reused.append(user_id)
            except GateAPIError as exc:
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

    async def replace(self, user_id: int, reason: str) -> StoredKey:
        """Delete the stored key of ``user_id`` on Gate (if it is there) and create another."""
        old = self._store.get(user_id)
        log.warning("key_replace", account=user_id, reason=reason)
        if old is not None:
            await self._delete_quietly(user_id, old.key)
            await self._store.forget_async(user_id)
        return await self._create(user_id, cleanup_orphans=False)

    async def _known_to_gate(self, stored: StoredKey) -> bool:
        async for info in self._client.list_keys(stored.user_id):
            if info.key == stored.key:
                return True
        return False

    async def _create(self, user_id: int, cleanup_orphans: bool) -> StoredKey:
        if cleanup_orphans:
            # A key of ours that the store does not know was created by a run that
            # died before storing it: its secret is lost, so it is of no use.
            async for info in self._client.list_keys(user_id):
                if info.name == self._key_name:
                    await self._delete_quietly(user_id, info.key)
        if self._store_down is not None:  # a key whose secret cannot be kept is churn
            raise KeyStoreWriteError(self._store_down)
        created = await self._client.create_key(user_id, self._key_name, self._perms)
        stored = StoredKey(user_id, created.key, created.secret.get_secret_value())
        try:
            await self._store.put_async(stored)
        except KeyStoreWriteError:
            # Its secret is lost with this process: take it off Gate again (best effort).
            with contextlib.suppress(GateError):
                await self._delete_quietly(user_id, created.key)
            raise
        log.info("key_created", account=user_id, key=created.key)
        return stored

    async def _delete_quietly(self, user_id: int, key: str) -> None:
        with contextlib.suppress(NotFoundError):
            await self._client.delete_key(user_id, key)
