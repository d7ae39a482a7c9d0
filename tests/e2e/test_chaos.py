"""Chaos: the whole daemon (``gate-collector run``) stays up while Gate and InfluxDB misbehave.

For ``CHAOS_SECONDS`` the simulator, seeded, injects at random: refused
handshakes (401/403/429 with Retry-After/502/503, with and without a body),
TCP resets in the middle of a frame, dropped connections, accounts disabled and
re-enabled, keys revoked, failing snapshots; a loopback proxy in front of the
real InfluxDB goes down or hangs; SIGHUPs arrive. The daemon must be up at every
step. Then everything heals, every account changes once more, and InfluxDB must
hold every account's true last values, and exactly the last push of each
account (one point per timestamp, per currency) with the values Gate sent.
The seed and the count of every fault injected are printed (``-s``); set
``CHAOS_SEED`` to replay a run and ``CHAOS_SECONDS`` for a longer one (faults come
every 0.1-0.6 s: about 40 in the default 15 s, as many as 30 s at 0.2-1.2 s gave).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import Fault, HandshakeFault, SimSubAccount, WsFault
from collector.devtools.simulator.ws_values import truncate2
from collector.gate.protocol import ASSET_DETAIL, ASSETS
from collector.points import schema
from tests.helpers import DaemonProcess, killed_at_end, wait_until
from tests.servers import FlakyProxy, InfluxServer

SEED = int(os.environ.get("CHAOS_SEED", "2121"))
CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS", "15"))
PAUSE = (0.1, 0.6)  # seconds between two faults
ACCOUNTS = 16
CURRENCIES = ("BTC", "ETH", "USDT")
DB = "chaos"
ACCOUNTS_TOML = "refresh_interval = 1.0\nsnapshot_interval = 5.0"
INFLUX_TOML = "flush_interval = 0.2\ntimeout = 2.0"


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    with killed_at_end() as started:
        yield started


class Chaos:
    """Injects one seeded fault at a time and counts what it injected."""

    def __init__(self, sim: Simulator, proxy: FlakyProxy, daemon: DaemonProcess) -> None:
        self.sim, self.proxy, self.daemon = sim, proxy, daemon
        self.rng = random.Random(SEED)
        self.counts: Counter[str] = Counter()
        self.moves: dict[str, Callable[[trio.Nursery], None]] = {
            "handshake_refused": self.refuse_handshake,
            "reset_mid_frame": self.reset,
            "connection_dropped": self.drop,
            "account_disabled": self.disable,
            "key_revoked": self.revoke,
            "snapshots_failing": self.fail_snapshots,
            "influx_down": lambda n: self.influx(n, "down"),
            "influx_hanging": lambda n: self.influx(n, "hang"),
            "sighup": self.sighup,
        }
        self.weights = [4, 3, 2, 1, 1, 2, 1, 1, 1]

    def account(self) -> SimSubAccount:
        return self.sim.state.accounts[self.rng.choice(sorted(self.sim.state.accounts))]

    def inject(self, nursery: trio.Nursery) -> None:
        name = self.rng.choices(list(self.moves), self.weights)[0]
        if name.startswith("influx") and self.proxy.mode != "pass":
            name = "sighup"  # InfluxDB is already out: one outage at a time
        if name == "handshake_refused" and self.sim.state.handshake_faults:
            # One waiting refusal at a time: queued ones all hit the one account that
            # reconnects, and its backoff (rightly) outgrows the test.
            name = "connection_dropped"
        self.moves[name](nursery)
        self.counts[name] += 1

    def refuse_handshake(self, _nursery: trio.Nursery) -> None:
        status = self.rng.choices([401, 403, 429, 502, 503], [1, 1, 3, 1, 2])[0]
        body = self.rng.choice([None, b'{"label":"REFUSED","message":"injected"}'])
        retry_after = self.rng.randint(1, 3) if status in (429, 503) else None
        self.sim.state.handshake_faults.append(HandshakeFault(status, body, retry_after))
        self.counts[f"handshake_{status}"] += 1
        self.account().ws_faults.append(WsFault("drop"))  # someone reconnects into it

    def reset(self, _nursery: trio.Nursery) -> None:
        self.account().ws_faults.append(WsFault("reset"))

    def drop(self, _nursery: trio.Nursery) -> None:
        self.account().ws_faults.append(WsFault("drop"))

    def disable(self, nursery: trio.Nursery) -> None:
        account = self.account()
        account.status = "disabled"
        nursery.start_soon(self.later, self.rng.uniform(2, 5), lambda: _enable(account))

    def revoke(self, _nursery: trio.Nursery) -> None:
        for key in self.sim.state.keys_of(self.account().gate_id):
            self.sim.state.revoke(key.key)

    def fail_snapshots(self, _nursery: trio.Nursery) -> None:
        count = self.rng.randint(1, 6)
        status = self.rng.choice([500, 503])
        self.sim.state.faults.append(Fault("/unified/accounts", count, status, "SERVER_ERROR"))

    def influx(self, nursery: trio.Nursery, mode: str) -> None:
        self.proxy.set_mode(mode)
        nursery.start_soon(
            self.later, self.rng.uniform(1.5, 4), lambda: self.proxy.set_mode("pass")
        )

    def sighup(self, _nursery: trio.Nursery) -> None:
        self.daemon.hangup()

    @staticmethod
    async def later(delay: float, action: Callable[[], None]) -> None:
        await trio.sleep(delay)
        action()


def _enable(account: SimSubAccount) -> None:
    account.status = "enabled"


def heal(sim: Simulator, proxy: FlakyProxy) -> None:
    proxy.set_mode("pass")
    sim.state.faults.clear()
    sim.state.handshake_faults.clear()
    for account in sim.state.accounts.values():
        account.ws_faults.clear()
        account.status = "enabled"


async def rows(influx: InfluxServer, q: str) -> list[dict[str, Any]]:
    answer = await trio.to_thread.run_sync(influx.query, q, DB)
    result = answer["results"][0]  # type: ignore[index]
    assert "error" not in result, result
    return list(result.get("series", []))


def close_to(stored: dict[str, Any], truth: dict[str, str]) -> bool:
    """Equal to the account's state: a push's 2-decimal truncation or a snapshot's value."""
    return all(
        stored.get(name) in (float(value), float(truncate2(value))) for name, value in truth.items()
    )


async def all_true(influx: InfluxServer, sim: Simulator) -> bool:
    fields = ", ".join(f'last("{n}") AS "{n}"' for n in schema.ASSETS_FIELDS.values())
    assets = {
        s["tags"]["account"]: dict(zip(s["columns"][1:], s["values"][0][1:], strict=True))
        for s in await rows(influx, f"SELECT {fields} FROM {schema.ASSETS} GROUP BY account")
    }
    names = ("available", "freeze", "equity", "total_liab")
    q = ", ".join(f'last("{n}") AS "{n}"' for n in names)
    details = {
        (s["tags"]["account"], s["tags"]["currency"]): dict(
            zip(s["columns"][1:], s["values"][0][1:], strict=True)
        )
        for s in await rows(
            influx, f"SELECT {q} FROM {schema.ASSET_DETAIL} GROUP BY account, currency"
        )
    }
    return all(
        close_to(assets.get(str(a.gate_id), {}), a.assets())
        and all(
            close_to(details.get((str(a.gate_id), c), {}), a.balance(i))
            for i, c in enumerate(CURRENCIES)
        )
        for a in sim.state.accounts.values()
    )


async def last_push_is_stored(influx: InfluxServer, sim: Simulator, account: int) -> None:
    """Exactly one point per (series, timestamp) of the account's last push, as sent."""
    state = sim.state
    at = state.last_push_ms[(account, ASSETS)]
    where = f"account = '{account}' AND time = {at}ms"
    series = await rows(influx, f'SELECT "u", "{schema.EQUITY}" FROM {schema.ASSETS} WHERE {where}')
    assert len(series) == 1 and len(series[0]["values"]) == 1, (account, series)
    assert series[0]["values"][0][2] == float(state.last_pushed[(account, ASSETS, "")]["e"])
    at = state.last_push_ms[(account, ASSET_DETAIL)]
    where = f"account = '{account}' AND time = {at}ms"
    q = f'SELECT count("balance") FROM {schema.ASSET_DETAIL} WHERE {where} GROUP BY currency'
    per_currency = {s["tags"]["currency"]: s["values"][0][1] for s in await rows(influx, q)}
    assert per_currency == dict.fromkeys(CURRENCIES, 1), (account, per_currency)


# 40-60 s on a quiet machine; the named deadlines below (start, heal, truth) fail
# first with a message, well before this guard on a loaded one.
@pytest.mark.timeout(300)
async def test_the_daemon_stays_up_through_chaos_and_ends_true(
    nursery: trio.Nursery,
    influxdb: InfluxServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
) -> None:
    sim = Simulator.create(accounts=ACCOUNTS)
    sim.state.rate_limit = 100_000
    sim.state.push_interval = sim.state.change_interval = 0.3
    await sim.start(nursery)
    proxy = FlakyProxy(urlsplit(influxdb.url).port or 0)
    await proxy.start(nursery)
    daemon = DaemonProcess(
        tmp_path,
        sim.rest_url,
        sim.ws_url,
        sim.state.broker,
        proxy.url,
        DB,
        accounts=ACCOUNTS_TOML,
        influx=INFLUX_TOML,
    )
    daemons.append(daemon)
    accounts = set(sim.state.accounts)
    await daemon.start()
    await wait_until(lambda: all(sim.state.active[a] == 2 for a in accounts), 60, "subscribed")

    chaos = Chaos(sim, proxy, daemon)
    async with trio.open_nursery() as restores:
        deadline = trio.current_time() + CHAOS_SECONDS
        while trio.current_time() < deadline:
            await trio.sleep(chaos.rng.uniform(*PAUSE))
            chaos.inject(restores)
            assert daemon.running(), f"the daemon died after {chaos.counts}"
        restores.cancel_scope.cancel()  # heal() below re-enables and restores them all
    print(
        f"\nchaos seed {SEED}: {sum(v for k, v in chaos.counts.items() if k in chaos.moves)} "
        f"faults in {CHAOS_SECONDS:g} s: {dict(sorted(chaos.counts.items()))}"
    )
    heal(sim, proxy)
    healing = trio.current_time()
    await wait_until(lambda: all(sim.state.active[a] == 2 for a in accounts), 90, "healed")
    print(f"every account subscribed again {trio.current_time() - healing:.1f} s after healing")
    assert daemon.running()

    sim.state.paused = True  # no more changes but this last one, pushed on both channels
    healed = {key: sim.state.last_push_ms.get(key, 0) for key in sim.state.last_push_ms}
    for account in sim.state.accounts.values():
        account.change(trio.current_time())
    await wait_until(
        lambda: all(
            sim.state.last_push_ms[(a, c)] > healed.get((a, c), 0)
            for a in accounts
            for c in (ASSETS, ASSET_DETAIL)
        ),
        30,
        "the last change pushed",
    )
    await _eventually(lambda: all_true(influxdb, sim), 60, "every account's last value true")
    for account_id in sorted(accounts):
        await last_push_is_stored(influxdb, sim, account_id)
    assert daemon.running()
    assert await daemon.stop() == 0
    log = daemon.log.read_text()
    assert "Traceback" not in log
    secrets = [sim.state.broker.secret, daemon.master_key]
    secrets += [k.secret for k in sim.state.keys.values()]
    assert [s for s in secrets if s in log] == []
    crashes = daemon.events("session_crashed") + daemon.events("snapshot_crashed")
    print(
        f"handshake refusals seen: {len(daemon.events('session_handshake_refused'))} + "
        f"{len(daemon.events('session_handshake_forbidden'))} forbidden; "
        f"key replacements: {len(daemon.events('key_replace'))}; "
        f"influx write failures: {len(daemon.events('influx_unreachable'))} unreachable, "
        f"{len(daemon.events('influx_write_failed'))} failed; crashes contained: {len(crashes)}"
    )
    assert crashes == []


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    try:
        with trio.fail_after(seconds):
            while not await check():
                await trio.sleep(0.5)
    except trio.TooSlowError:
        raise AssertionError(f"not within {seconds} s: {what}") from None
