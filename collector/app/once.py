"""``gate-collector run --once`` (``--test``): the points it would write, not written.

Like Telegraf's ``--test``: discover the sub-accounts of this shard, take one
REST snapshot of each enabled one (``GET /unified/accounts`` signed with the
account's own stored key), print the line protocol on stdout and exit. Nothing
is written to InfluxDB and the key store is only read. Exit 0 when every enabled
account gave a snapshot, 1 when some could not (each named on stderr).

The REST call and the body -> points mapping are the smallest that do: the
collector's own snapshot client and mapping replace them where they exist.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx
import orjson

from collector.app.commands import open_broker
from collector.config import Settings, http_client
from collector.gate.models import SubAccount
from collector.gate.signing import REST_PREFIX, ApiCredentials, rest_headers
from collector.keys import KeyStore, KeyStoreError
from collector.keys.store import STORE_NAME
from collector.points import schema
from collector.points.lineproto import Encoder, FieldValue, Point
from collector.supervisor import owns

UNIFIED_ACCOUNTS = "/unified/accounts"


async def run_once(settings: Settings) -> int:
    """Print one snapshot per enabled account of this shard; write nothing."""
    store = _open_store(settings)
    shard = settings.accounts
    async with open_broker(settings) as broker:
        accounts = [
            a
            async for a in broker.list_sub_accounts()
            if a.enabled and owns(shard, a.gate_id)
        ]
    encoder, missing = Encoder(), 0
    async with http_client(settings.gate.ca_file or True) as http:
        for account in accounts:
            stored = store.get(account.gate_id)
            if stored is None:
                missing += 1
                print(f"gate-collector: no stored key for {account.gate_id}", file=sys.stderr)
                continue
            try:
                body = await fetch_snapshot(http, settings.gate.rest_url, stored.credentials)
            except (httpx.HTTPError, ValueError) as exc:
                missing += 1
                print(f"gate-collector: snapshot of {account.gate_id}: {exc}", file=sys.stderr)
                continue
            for point in snapshot_points(account, body, time.time()):
                line = encoder.encode(point)
                if line is not None:
                    print(line)
    return 1 if missing else 0


def _open_store(settings: Settings) -> KeyStore:
    master = settings.state.master_key
    path = settings.state.path / STORE_NAME
    if not path.exists():
        raise KeyStoreError(
            f"no key store in {settings.state.path}: run the service or "
            "`gate-collector accounts --provision` first"
        )
    return KeyStore(path, master.get_secret_value() if master else None)


async def fetch_snapshot(
    http: httpx.AsyncClient, rest_url: str, creds: ApiCredentials
) -> dict[str, Any]:
    """``GET /unified/accounts`` signed with the sub-account's own key."""
    headers = rest_headers(creds, "GET", REST_PREFIX + UNIFIED_ACCOUNTS, "", b"", time.time())
    response = await http.get(rest_url + UNIFIED_ACCOUNTS, headers=headers)
    if response.status_code != 200:
        raise ValueError(f"Gate answered {response.status_code}: {response.text[:200]}")
    body = orjson.loads(response.content)
    if not isinstance(body, dict):
        raise ValueError("Gate's answer is not an object")
    return body


def _numbers(values: dict[str, Any]) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    for key, value in values.items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                fields[key] = float(value)
            except ValueError:
                continue
    return fields


def snapshot_points(account: SubAccount, body: dict[str, Any], now: float) -> list[Point]:
    """The REST body as points of the same measurements and names as the WebSocket's."""
    refresh = body.get(schema.FIELD_REFRESH_TIME)
    time_ms = int(refresh) * 1000 if isinstance(refresh, int) else int(now * 1000)
    tags = (
        (schema.TAG_ACCOUNT, str(account.gate_id)),
        (schema.TAG_ACCOUNT_LABEL, account.name or account.id),
    )
    top = {k: v for k, v in body.items() if k not in ("balances", "user_id")}
    fields = _numbers(top)
    if isinstance(refresh, int):
        fields[schema.FIELD_REFRESH_TIME] = refresh
    points = [Point(schema.ASSETS, tags, fields, time_ms)]
    balances = body.get("balances")
    for currency, values in balances.items() if isinstance(balances, dict) else []:
        if isinstance(values, dict):
            detail_tags = (*tags, (schema.TAG_CURRENCY, str(currency)))
            points.append(Point(schema.ASSET_DETAIL, detail_tags, _numbers(values), time_ms))
    return points
