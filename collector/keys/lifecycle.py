"""The key lifecycle of one account: create, grace, replace, retire.

Whoever runs the account's sessions keeps a :class:`KeyState` for it and asks
:meth:`KeyLifecycle.key_for` before each session; after a refusal
:meth:`KeyLifecycle.recover_key` waits or replaces the key; once the session
delivers data :meth:`KeyLifecycle.retire` deletes the keys it replaced.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from collector.base.backoff import backoff_delay
from collector.base.logging import get_logger
from collector.gate.broker import BrokerClient
from collector.gate.errors import (
    CONFIG_REFUSALS,
    GateError,
    NotFoundError,
    Refusal,
    refusal_hint,
    refusal_kind,
)
from collector.gate.models import SubAccount, label
from collector.gate.protocol import AuthenticationFailed
from collector.keys.provision import KeyProvisioner
from collector.keys.store import KeyStore, KeyStoreError, KeyStoreWriteError, StoredKey

log = get_logger(__name__)

REPLACE_BACKOFF: Final = (5.0, 900.0)
# Retries of a refused key that is still within Gate's activation grace.
GRACE_BACKOFF: Final = (5.0, 60.0)


@dataclass(slots=True)
class KeyState:
    """What the lifecycle remembers of one account's key between its sessions."""

    account: SubAccount
    # Refusals in a row (backoff of grace retries and of config refusals).
    refusals: int = 0
    replacements: int = 0
    # Keys of this instance other than the stored one may be left on Gate: delete
    # them once the stored key has delivered data.
    retire_pending: bool = False


@dataclass
class KeyStats:
    """Counters of the key lifecycle."""

    key_replacements: int = 0
    key_rotations: int = 0
    key_errors: int = 0
    # Refusals a new key cannot cure (IP whitelist, permissions): the config is wrong.
    key_config_refusals: int = 0
    keyless: dict[int, str] = field(default_factory=dict)  # account -> its label


@dataclass
class KeyLifecycle:
    """Keeps one usable key per account; ``gone`` stops the sessions of an account that
    went away (Gate said so)."""

    broker: BrokerClient
    store: KeyStore
    provisioner: KeyProvisioner
    rng: random.Random
    stats: KeyStats
    gone: Callable[[KeyState, str], None]

    async def key_for(self, key: KeyState) -> StoredKey | None:
        """The stored key, creating one (retried with backoff) if there is none; None: gone."""
        account_id = key.account.gate_id
        failures = 0
        while (stored := self.store.get(account_id)) is None:
            self.stats.keyless[account_id] = label(key.account)
            try:
                await self.provisioner.create(account_id)
                key.retire_pending = True
            except NotFoundError:
                self.gone(key, "account gone")
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
        self, key: KeyState, stored: StoredKey, failure: AuthenticationFailed
    ) -> bool:
        """After a refused key: wait, or replace it; False when the account is gone.

        A clock refusal keeps the key (the REST call made here re-measures the skew);
        an IP, permission or lock refusal is one no new key cures (loud,
        counted, retried slowly); a key within Gate's activation grace is retried
        with backoff; only then is the key dead, and a successor is created and
        stored first. The dead key is deleted once the successor delivers data.
        """
        account_id = key.account.gate_id
        kind = refusal_kind(failure.reason)
        key.refusals += 1
        if kind in CONFIG_REFUSALS:
            self.stats.key_config_refusals += 1
            delay = backoff_delay(key.refusals, *REPLACE_BACKOFF, self.rng)
            log.error(
                f"key_refused_{kind.value}",
                account=account_id,
                reason=failure.reason,
                wait_seconds=round(delay, 1),
                hint=refusal_hint(kind),
            )
            await trio.sleep(delay)
            return True
        if kind is Refusal.KEY and await self._activating(stored):
            delay = backoff_delay(key.refusals, *GRACE_BACKOFF, self.rng)
            log.warning(
                "key_not_active_yet",
                account=account_id,
                age_seconds=round(self.provisioner.age(stored), 1),
                wait_seconds=round(delay, 1),
            )
            await trio.sleep(delay)
            return True
        return await self._replace_dead_key(key, stored, kind)

    async def _activating(self, stored: StoredKey) -> bool:
        """A refused key Gate may still be activating: young, never worked, still on Gate."""
        if not self.provisioner.in_grace(stored):
            return False
        try:  # a key deleted on Gate's site is dead, however young
            return await self.provisioner.exists_on_gate(stored)
        except GateError:
            return True  # cannot tell now: give it the grace, ask again next time

    async def _replace_dead_key(self, key: KeyState, stored: StoredKey, kind: Refusal) -> bool:
        account_id = key.account.gate_id
        failures = 0
        while True:
            try:
                current = await self.broker.get_sub_account(account_id)
                if not current.enabled:
                    self.gone(key, "account disabled")
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
                    key.replacements += 1
                key.retire_pending = True
                return True
            except NotFoundError:
                self.gone(key, "account gone")
                return False
            except (GateError, KeyStoreError) as exc:
                # The old key stays stored: the account is never left without one.
                failures += 1
                await self._key_error(account_id, "key_replace_failed", exc, failures)

    async def retire(self, key: KeyState) -> None:
        """Delete the keys an account's stored key replaced (once it has delivered data)."""
        if not key.retire_pending:
            return
        try:
            await self.provisioner.retire(key.account.gate_id)
            key.retire_pending = False
        except GateError as exc:  # tried again at the next upkeep
            self.stats.key_errors += 1
            log.error("key_retire_failed", account=key.account.gate_id, error=str(exc))
