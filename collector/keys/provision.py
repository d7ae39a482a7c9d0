"""The key lifecycle: one read-only key of the collector's own per enabled sub-account."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import trio

from collector.gate.broker import BrokerClient
from collector.gate.errors import GateAPIError, NotFoundError
from collector.gate.models import KeyPermission, SubAccount
from collector.keys.store import KeyStore, StoredKey
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

    async def ensure_keys(
        self, accounts: Iterable[SubAccount], verify: bool = False
    ) -> ProvisionReport:
        """A key for every enabled account that has none; stored keys are reused.

        With ``verify``, each stored key is looked up on Gate (one list call per
        account) and replaced when Gate no longer has it.
        """
        report = ProvisionReport()
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

    async def replace(self, user_id: int, reason: str) -> StoredKey:
        """Delete the stored key of ``user_id`` on Gate (if it is there) and create another."""
        old = self._store.get(user_id)
        log.warning("key_replace", account=user_id, reason=reason)
        if old is not None:
            await self._delete_quietly(user_id, old.key)
            self._store.forget(user_id)
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
        created = await self._client.create_key(user_id, self._key_name, self._perms)
        stored = StoredKey(user_id, created.key, created.secret.get_secret_value())
        self._store.put(stored)
        log.info("key_created", account=user_id, key=created.key)
        return stored

    async def _delete_quietly(self, user_id: int, key: str) -> None:
        with contextlib.suppress(NotFoundError):
            await self._client.delete_key(user_id, key)
