"""``gate-collector run --once`` (``--test``): the points it would write, not written.

Like Telegraf's ``--test``: discover the sub-accounts of this shard, take one
REST snapshot of each enabled one (``GET /unified/accounts`` signed with the
account's own stored key), print the line protocol on stdout and exit. Nothing
is written to InfluxDB and the key store is only read. Exit 0 when every enabled
account gave a snapshot, 1 when some could not (each named on stderr).

The REST call and the body -> points mapping are the collector's own
(:class:`~collector.gate.snapshot.SnapshotClient`,
:func:`~collector.points.snapshot.snapshot_points`),
so what is printed is exactly what the service writes for a snapshot.
"""

from __future__ import annotations

import sys

from collector.app.commands import open_broker
from collector.config import Settings, http_client
from collector.gate.errors import GateError
from collector.gate.models import label as account_label
from collector.gate.snapshot import SnapshotClient
from collector.keys import KeyStore, KeyStoreError
from collector.keys.store import STORE_NAME
from collector.points.lineproto import Encoder
from collector.points.snapshot import snapshot_points
from collector.supervisor.supervisor import owns


async def run_once(settings: Settings) -> int:
    """Print one snapshot per enabled account of this shard; write nothing."""
    store = _open_store(settings)
    shard = settings.accounts
    async with open_broker(settings) as broker:
        accounts = [
            a async for a in broker.list_sub_accounts() if a.enabled and owns(shard, a.gate_id)
        ]
    encoder, missing = Encoder(), 0
    async with http_client(settings.gate.ca_file or True) as http:
        client = SnapshotClient(http, settings.gate.rest_url)
        for account in accounts:
            stored = store.get(account.gate_id)
            if stored is None:
                missing += 1
                print(f"gate-collector: no stored key for {account.gate_id}", file=sys.stderr)
                continue
            try:
                body, read_at = await client.read(stored.credentials)
            except GateError as exc:
                missing += 1
                print(f"gate-collector: snapshot of {account.gate_id}: {exc}", file=sys.stderr)
                continue
            label = account_label(account)
            for point in snapshot_points(account.gate_id, label, body, int(read_at * 1000)).points:
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
