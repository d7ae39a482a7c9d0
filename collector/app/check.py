"""``gate-collector check``: try every outside dependency once and change nothing.

Its WebSocket handshake is one more of Gate's connections on this address: next
to a collector that holds ``gate.max_connections_per_ip`` of them, Gate refuses
it (429), and the FAIL line says so.

Read-only by design: the key store is opened only if it exists (never created or
rewritten), the WebSocket gets a handshake and a ``unified.ping``, InfluxDB gets
a write with an empty body (InfluxDB 1.x answers 204 for a database it has and
404 "database not found" otherwise; nothing is stored; with
``influx.create_database`` on, a missing database is fine: ``run`` creates it).
Each step prints ``ok: ...``; the first problem prints one ``FAIL: ...`` line and
exits 1 for Gate or InfluxDB, 2 for a local problem (the master key, the key
store), as ``run`` would. ``--offline`` runs only the local steps.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

import httpx
import trio
from cryptography.fernet import Fernet
from trio_websocket import ConnectionRejected, open_websocket_url

from collector.app.commands import open_broker
from collector.app.failures import EXIT_LOCAL, EXIT_REMOTE
from collector.base.logging import redact_url
from collector.config import InfluxSettings, Settings, http_client, load_settings
from collector.gate import protocol
from collector.gate.errors import GateError
from collector.keys import KeyStore, KeyStoreError
from collector.keys.store import STORE_NAME
from collector.session.websocket import connect_failure, tls_context
from collector.sink.request import write_request

# Each outside call of a check gets this long.
CHECK_TIMEOUT: Final = 15.0


class CheckFailed(Exception):
    """One step failed; the message is the FAIL line, ``code`` the exit code."""

    def __init__(self, message: str, code: int = EXIT_REMOTE) -> None:
        super().__init__(message)
        self.code = code


async def check(config: Path, *, offline: bool = False) -> int:
    """Run the steps in order; 0 when all pass, else the first failure's exit code."""
    settings = load_settings(config)
    print(f"ok: {config} is valid")
    steps = (key_store,) if offline else (gate_rest, gate_websocket, key_store, influx_write)
    for step in steps:
        try:
            print(f"ok: {await step(settings)}", flush=True)
        except CheckFailed as failed:
            print(f"FAIL: {failed}", flush=True)
            return failed.code
    if offline:
        print("ok: offline: Gate and InfluxDB not contacted (run without --offline for them)")
    return 0


async def gate_rest(settings: Settings) -> str:
    """``GET /broker/info`` with the broker key."""
    url = redact_url(settings.gate.rest_url)
    try:
        async with open_broker(settings) as broker:
            info = await broker.info()
    except GateError as exc:
        raise CheckFailed(f"Gate broker API at {url}: {exc}") from None
    return f"Gate broker API at {url} (broker id {info.id})"


async def gate_websocket(settings: Settings) -> str:
    """A WebSocket handshake with ``gate.ws_url`` and a ``unified.ping``."""
    url = settings.gate.ws_url
    ssl_context = tls_context(settings.gate.ca_file) if url.startswith("wss://") else None
    try:
        with trio.fail_after(CHECK_TIMEOUT):
            async with open_websocket_url(url, ssl_context=ssl_context) as ws:
                await ws.send_message(protocol.ping(int(time.time())).decode())
                while not isinstance(protocol.parse(await ws.get_message()), protocol.Pong):
                    pass
    except trio.TooSlowError:
        raise CheckFailed(
            f"Gate WebSocket at {url}: no unified.pong within {CHECK_TIMEOUT:g} s; "
            "check gate.ws_url"
        ) from None
    except Exception as exc:  # any way a handshake can fail is this step's answer
        inner = _single(exc)
        if isinstance(inner, ConnectionRejected):  # e.g. 429: Gate's limit on this IP
            raise CheckFailed(connect_failure(url, inner)) from None
        raise CheckFailed(f"Gate WebSocket at {url}: {_reason(exc)}; check gate.ws_url") from None
    return f"Gate WebSocket at {url} answers unified.ping"


async def key_store(settings: Settings) -> str:
    """Open the key store if it exists (read only); else check the master key's form."""
    master = settings.state.master_key
    if master is None:
        raise CheckFailed(
            "no master key (GATE_COLLECTOR_MASTER_KEY or credential 'master-key')", EXIT_LOCAL
        )
    path = settings.state.path / STORE_NAME
    if not path.exists():
        try:
            Fernet(master.get_secret_value())
        except ValueError:
            raise CheckFailed(
                "the master key is not a Fernet key; make one with `gate-collector genkey`",
                EXIT_LOCAL,
            ) from None
        return (
            f"no key store in {settings.state.path} yet (`run` creates it); master key well-formed"
        )
    try:
        store = KeyStore(path, master.get_secret_value())
    except KeyStoreError as exc:
        raise CheckFailed(str(exc), EXIT_LOCAL) from None
    return f"key store {path} opens with the master key ({len(store)} keys)"


async def influx_write(settings: Settings) -> str:
    """A write with an empty body: proves the database/bucket and the rights, stores nothing."""
    influx = settings.influx
    if influx.api == "v2":
        missing = [
            name for name, value in (("org", influx.org), ("bucket", influx.bucket)) if not value
        ]
        if influx.token is None:
            missing.append("token (INFLUX_TOKEN or credential 'influx-token')")
        if missing:
            raise CheckFailed(f'influx.api = "v2" needs influx.{", influx.".join(missing)}')
    request = write_request(influx, gzip=False)  # the empty body is sent as it is
    try:
        async with http_client(timeout=min(influx.timeout, CHECK_TIMEOUT)) as http:
            response = await request.send(http, content=b"")
    except httpx.HTTPError as exc:
        raise CheckFailed(
            f"InfluxDB at {redact_url(influx.url)}: cannot connect ({_reason(exc)}); "
            "is it running? check influx.url"
        ) from None
    target = f"bucket {influx.bucket}" if influx.api == "v2" else f"database {influx.database}"
    if response.status_code in (200, 204):
        return f"InfluxDB at {redact_url(influx.url)} accepts writes to {target} (an empty write)"
    if _will_be_created(influx, response.status_code, response.text):
        return (
            f"InfluxDB at {redact_url(influx.url)} answers; "
            f"database {influx.database} does not exist yet: "
            "`run` creates it (influx.create_database = true)"
        )
    raise CheckFailed(
        f"InfluxDB at {redact_url(influx.url)} refuses a write to {target}: {response.status_code} "
        f"{response.text.strip()[:200]}; {_influx_hint(response.status_code)}"
    )


def _will_be_created(influx: InfluxSettings, status: int, text: str) -> bool:
    """A v1 "database not found" that ``run``'s ``CREATE DATABASE`` will fix."""
    return (
        influx.api == "v1"
        and influx.create_database
        and status == 404
        and "database not found" in text
    )


def _influx_hint(status: int) -> str:
    if status == 404:
        return "create it, or set influx.database / influx.bucket"
    if status in (401, 403):
        return "check influx.username/password or influx.token and their write rights"
    return "check influx.url and the server's log"


def _single(exc: BaseException) -> BaseException:
    """The one exception inside nested single-exception groups (trio's nurseries)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _reason(exc: BaseException) -> str:
    inner = _single(exc)
    return str(inner) or type(inner).__name__
