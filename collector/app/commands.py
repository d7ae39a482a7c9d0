"""What each ``gate-collector`` sub-command does (the CLI only parses arguments)."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import trio

from collector.config import ConfigError, Settings, broker_credentials, http_client, load_settings
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import SimSubAccount, WsFault
from collector.gate.broker import BrokerClient
from collector.gate.errors import CONFIG_REFUSALS, AuthError, GateError
from collector.gate.models import SubAccount
from collector.gate.signing import ApiCredentials
from collector.gate.snapshot import NotUnifiedError, SnapshotClient
from collector.keys import KeyPolicy, KeyProvisioner, KeyStore, generate_master_key
from collector.keys.store import STORE_NAME, StoredKey
from collector.supervisor import account_state as status
from collector.supervisor.supervisor import owns


@asynccontextmanager
async def open_broker(settings: Settings) -> AsyncIterator[BrokerClient]:
    """A BrokerClient for the configured Gate, closed on exit."""
    creds = broker_credentials(settings)
    async with http_client(settings.gate.ca_file or True) as http:
        yield BrokerClient(http, creds, base_url=settings.gate.rest_url)


# How a listing looks keys up: a key store's ``get``, or None without the master key.
KeyLookup = Callable[[int], StoredKey | None] | None


def _account_row(account: SubAccount, store: KeyLookup, states: dict[int, str]) -> dict[str, Any]:
    if not account.enabled:
        key_state = "-"
    elif store is None:
        key_state = "unknown"
    else:
        key_state = "stored" if store(account.gate_id) else "missing"
    return {
        "user_id": account.gate_id,
        "id": account.id,
        "name": account.name,
        "status": account.status,
        "key": key_state,
        "state": states.get(account.gate_id, "-" if not account.enabled else "unknown"),
    }


PROBE_CONCURRENCY = 8


async def _probe_states(
    settings: Settings, found: list[SubAccount], store: KeyLookup
) -> dict[int, str]:
    """Each enabled account's unified state, read with its own stored key.

    ``unified`` (Gate answers /unified/accounts), ``not_unified``, ``forbidden``
    (a refusal no new key cures: permission, IP whitelist, lock), ``key_refused``,
    ``keyless`` (no stored key), ``error: ...``; without the master key nothing can
    be read (``unknown``).
    """
    if store is None:
        return {}
    states: dict[int, str] = {}
    limiter = trio.CapacityLimiter(PROBE_CONCURRENCY)
    async with http_client(settings.gate.ca_file or True) as http:
        client = SnapshotClient(http, settings.gate.rest_url)

        async def probe(account: SubAccount) -> None:
            stored = store(account.gate_id)
            if stored is None:
                states[account.gate_id] = status.KEYLESS
                return
            async with limiter:
                states[account.gate_id] = await _probe_one(client, stored.credentials)

        async with trio.open_nursery() as nursery:
            for account in found:
                if account.enabled:
                    nursery.start_soon(probe, account)
    return states


async def _probe_one(client: SnapshotClient, creds: ApiCredentials) -> str:
    try:
        await client.fetch(creds)
    except NotUnifiedError:
        return status.NOT_UNIFIED
    except AuthError as exc:
        return status.FORBIDDEN if exc.refusal in CONFIG_REFUSALS else "key_refused"
    except GateError as exc:
        return f"error: {str(exc)[:60]}"
    return "unified"


def _read_only_lookup(settings: Settings) -> KeyLookup:
    """Key lookups of the existing key store (none yet: no key stored); never creates anything."""
    master = settings.state.master_key
    if master is None:
        return None
    path = settings.state.path / STORE_NAME
    if not path.exists():
        return lambda _: None
    return KeyStore(path, master.get_secret_value()).get


async def accounts(config: Path, as_json: bool, provision: bool) -> int:
    """List sub-accounts with status and key state; optionally provision keys first.

    Without ``--provision`` it only reads: no state directory, no key store is
    created (one bound to whatever master key is set would lock out the real one).
    """
    settings = load_settings(config)
    master = settings.state.master_key
    store: KeyStore | None = None
    if provision:
        if master is None:
            raise ConfigError("--provision needs the master key (GATE_COLLECTOR_MASTER_KEY)")
        store = KeyStore.open(settings.state.path, master.get_secret_value())
    lookup = store.get if store is not None else _read_only_lookup(settings)
    async with open_broker(settings) as broker:
        found = [a async for a in broker.list_sub_accounts()]
        if store is not None:
            # Only this shard's accounts, by the supervisor's own ownership test.
            mine = [a for a in found if owns(settings.accounts, a.gate_id)]
            policy = KeyPolicy.from_settings(settings.accounts, settings.state.path)
            report = await KeyProvisioner(broker, store, policy).ensure_keys(mine)
            print(
                f"provisioned: {len(report.created)} created, {len(report.reused)} reused, "
                f"{len(report.failed)} failed",
                file=sys.stderr,
            )
    states = await _probe_states(settings, found, lookup)
    rows = [_account_row(a, lookup, states) for a in found]
    if as_json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_table(rows)
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    columns = ["user_id", "id", "name", "status", "key", "state"]
    widths = {c: max([len(c), *(len(str(r[c])) for r in rows)]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    enabled = sum(1 for r in rows if r["status"] == "enabled")
    stored = sum(1 for r in rows if r["key"] == "stored")
    print(f"{len(rows)} sub-accounts, {enabled} enabled, {stored} with a stored key")


def write_credentials(directory: Path, creds: ApiCredentials) -> None:
    """Write gate-api-key / gate-api-secret files (0600) for $CREDENTIALS_DIRECTORY."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, value in (("gate-api-key", creds.key), ("gate-api-secret", creds.secret)):
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)


@dataclass(frozen=True)
class SimulateOptions:
    """How the simulated broker behaves (``gate-collector simulate``'s options)."""

    accounts: int = 20
    disabled_every: int = 5
    change_every: float = 0.0  # seconds between changes (each pushed); 0: never
    quiet_every: int = 0  # every Nth enabled account never changes; 0: none
    rate_limit: int = 80  # REST calls per 10 s per key
    fault: str | None = None  # a WsFault kind injected every fault_every seconds
    fault_every: float = 10.0

    def build(self) -> Simulator:
        """A simulator set up as the options say."""
        simulator = Simulator.create(self.accounts, self.disabled_every)
        state = simulator.state
        state.rate_limit = self.rate_limit
        state.change_interval = self.change_every
        if self.change_every:  # look for changes at least as often as they happen
            state.push_interval = min(state.push_interval, self.change_every)
        for index, account in enumerate(_enabled(simulator)):
            if self.quiet_every and index % self.quiet_every == self.quiet_every - 1:
                account.change_interval = 0
        return simulator


def _enabled(simulator: Simulator) -> list[SimSubAccount]:
    return [a for a in simulator.state.accounts.values() if a.status == "enabled"]


async def inject_faults(simulator: Simulator, kind: str, every: float, rng: random.Random) -> None:
    """Every ``every`` seconds, the next push to a random busy account carries ``kind``."""
    busy = [a for a in _enabled(simulator) if a.change_interval != 0]
    while busy:
        await trio.sleep(every)
        rng.choice(busy).ws_faults.append(WsFault(kind, seconds=every / 2))


async def simulate(
    options: SimulateOptions,
    host: str,
    rest_port: int,
    ws_port: int,
    credentials_dir: Path,
) -> int:
    """Run the simulator until interrupted; the broker key goes to files, not stdout."""
    simulator = options.build()
    simulator.host, simulator.rest_port, simulator.ws_port = host, rest_port, ws_port
    write_credentials(credentials_dir, simulator.state.broker)
    async with trio.open_nursery() as nursery:
        await simulator.start(nursery)
        if options.fault is not None:
            nursery.start_soon(
                inject_faults, simulator, options.fault, options.fault_every, random.Random()
            )
        print(
            orjson.dumps(
                {
                    "rest_url": simulator.rest_url,
                    "ws_url": simulator.ws_url,
                    "credentials_dir": str(credentials_dir),
                }
            ).decode(),
            flush=True,
        )
    return 0


def genkey() -> int:
    """Print a new master key."""
    print(generate_master_key())
    return 0
