"""The key lifecycle of one account's slot: create, grace, replace, retire.

A slot asks :meth:`KeyLifecycle.key_for` before each session; after a refusal
:meth:`KeyLifecycle.recover_key` waits or replaces the key; once the session
delivers data :meth:`KeyLifecycle.retire` deletes the keys it replaced.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from collector.backoff import backoff_delay
from collector.gate.broker import BrokerClient
from collector.gate.errors import GateError, NotFoundError, Refusal, refusal_kind
from collector.keys import KeyProvisioner, KeyStore, KeyStoreError, KeyStoreWriteError, StoredKey
from collector.logging import get_logger
from collector.session import AuthenticationFailed
from collector.slot import Slot, SupervisorStats, label

log = get_logger(__name__)

REPLACE_BACKOFF: Final = (5.0, 900.0)
# Retries of a refused key that is still within Gate's activation grace.
GRACE_BACKOFF: Final = (5.0, 60.0)


@dataclass
class KeyLifecycle:
    """Keeps one usable key per slot; ``gone`` stops a slot whose account went away."""

    broker: BrokerClient
    store: KeyStore
    provisioner: KeyProvisioner
    rng: random.Random
    stats: SupervisorStats
    gone: Callable[[Slot, str], None]

    async def key_for(self, slot: Slot) -> StoredKey | None:
        """The stored key, creating one (retried with backoff) if there is none; None: gone."""
        account_id = slot.account.gate_id
        failures = 0
        while (stored := self.store.get(account_id)) is None:
            self.stats.keyless[account_id] = label(slot.account)
            try:
                await self.provisioner.create(account_id)
                slot.retire_pending = True
            except NotFoundError:
                self.gone(slot, "account gone")
                return None
            except (GateError, KeyStoreError) as exc:  # an unwritable store: retried too
                failures += 1
                await self._key_error(account_id, "key_create_failed", exc, failures)
        self.stats.keyless.pop(account_id, None)
        return stored

    async def _key_error(
        self, account_id: int, event: str, exc: GateError | KeyStoreError, failures: int
    ) -> None:
        """Log, count, wait the backoff, or less: a key stored meanwhile ends the wait."""
        self.stats.key_errors += 1
        delay = backoff_delay(failures, *REPLACE_BACKOFF, self.rng)
        # An unwritable store is said once for all accounts (key_store_unwritable):
        # one error line per account and retry was a storm at 10,000 accounts.
        say = log.debug if isinstance(exc, KeyStoreWriteError) else log.error
        say(event, account=account_id, error=str(exc), wait_seconds=round(delay, 1))
        stored = self.provisioner.key_stored(account_id)  # e.g. by a discovery, the disk free
        with trio.move_on_after(delay):
            await stored.wait()

    async def recover_key(
        self, slot: Slot, stored: StoredKey, failure: AuthenticationFailed
    ) -> bool:
        """After a refused key: wait, or replace it; False when the account is gone.

        A clock refusal keeps the key (the REST call made here re-measures the skew);
        an IP or permission refusal is a configuration error no new key cures (loud,
        counted, retried slowly); a key within Gate's activation grace is retried
        with backoff; only then is the key dead, and a successor is created and
        stored first. The dead key is deleted once the successor delivers data.
        """
        account_id = slot.account.gate_id
        kind = refusal_kind(failure.reason)
        slot.refusals += 1
        if kind in (Refusal.IP, Refusal.PERMISSION):
            self.stats.key_config_refusals += 1
            delay = backoff_delay(slot.refusals, *REPLACE_BACKOFF, self.rng)
            setting = "key_ip_whitelist" if kind is Refusal.IP else "key_permissions"
            log.error(
                f"key_refused_{kind.value}",
                account=account_id,
                reason=failure.reason,
                wait_seconds=round(delay, 1),
                hint=f"a new key would be refused the same way: check accounts.{setting}",
            )
            await trio.sleep(delay)
            return True
        if kind is Refusal.KEY and await self._activating(stored):
            delay = backoff_delay(slot.refusals, *GRACE_BACKOFF, self.rng)
            log.warning(
                "key_not_active_yet",
                account=account_id,
                age_seconds=round(self.provisioner.age(stored), 1),
                wait_seconds=round(delay, 1),
            )
            await trio.sleep(delay)
            return True
        return await self._replace_dead_key(slot, stored, kind)

    async def _activating(self, stored: StoredKey) -> bool:
        """A refused key Gate may still be activating: young, never worked, still on Gate."""
        if not self.provisioner.in_grace(stored):
            return False
        try:  # a key deleted on Gate's site is dead, however young
            return await self.provisioner.exists_on_gate(stored)
        except GateError:
            return True  # cannot tell now: give it the grace, ask again next time

    async def _replace_dead_key(self, slot: Slot, stored: StoredKey, kind: Refusal) -> bool:
        account_id = slot.account.gate_id
        failures = 0
        while True:
            try:
                current = await self.broker.get_sub_account(account_id)
                if not current.enabled:
                    self.gone(slot, "account disabled")
                    return False
                if kind is Refusal.CLOCK:
                    log.warning(
                        "session_clock_expired",
                        account=account_id,
                        clock_skew=round(self.broker.clock_skew, 1),
                    )
                    return True
                if self.store.get(account_id) == stored:  # not replaced meanwhile
                    log.warning("key_replace", account=account_id, key=stored.key)
                    await self.provisioner.create(account_id)
                    self.stats.key_replacements += 1
                    slot.replacements += 1
                slot.retire_pending = True
                return True
            except NotFoundError:
                self.gone(slot, "account gone")
                return False
            except (GateError, KeyStoreError) as exc:
                # The old key stays stored: the account is never left without one.
                failures += 1
                await self._key_error(account_id, "key_replace_failed", exc, failures)

    async def retire(self, slot: Slot) -> None:
        """Delete the keys a slot's stored key replaced (once it has delivered data)."""
        if not slot.retire_pending:
            return
        try:
            await self.provisioner.retire(slot.account.gate_id)
            slot.retire_pending = False
        except GateError as exc:  # tried again at the next upkeep
            self.stats.key_errors += 1
            log.error("key_retire_failed", account=slot.account.gate_id, error=str(exc))
