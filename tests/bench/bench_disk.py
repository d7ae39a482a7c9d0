"""Bytes per point on the real InfluxDB 1.x, per measurement, and the disk a day costs.

Writes 6 h of synthetic history per measurement (its own database each), lets
InfluxDB snapshot and compact it to TSM files, and divides the bytes on disk by
the points. Values move like real ones (random walks), so compression is not
flattered by constants. Prints a table; run: ``.venv/bin/python -m tests.bench.bench_disk``.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from collector.devtools.localinflux import InfluxServer, influx_server
from collector.points import schema
from collector.points.lineproto import Point, encode

ACCOUNTS = 100
HOURS = 6
CURRENCIES = ("USDT", "BTC", "ETH")
STATS_S = 10  # the collector's stats interval
UPDATE_S = 60  # assumed: one assets + one asset_detail push per account per minute
START_MS = (int(time.time()) // 3600 - HOURS - 1) * 3_600_000


def walk(rng: random.Random, n: int, scale: float) -> Iterator[float]:
    value = scale
    for _ in range(n):
        value += rng.gauss(0, scale * 1e-4)
        yield round(value, 2)


def account_tags(a: int) -> tuple[tuple[str, str], ...]:
    return ((schema.TAG_ACCOUNT, str(100_000 + a)), (schema.TAG_ACCOUNT_LABEL, f"sub-{a}"))


def shard_tags() -> tuple[tuple[str, str], ...]:
    return ((schema.TAG_INSTANCE, "collector-0"), (schema.TAG_SHARD, "0/1"))


def assets(rng: random.Random) -> Iterator[Point]:
    steps = HOURS * 3600 // UPDATE_S
    for a in range(ACCOUNTS):
        values = {
            name: list(walk(rng, steps, 1e5 * (a + 1))) for name in schema.ASSETS_FIELDS.values()
        }
        for i in range(steps):
            fields = {name: v[i] for name, v in values.items()}
            fields.update(u=100_000 + a, refresh_time=START_MS // 1000 + i * UPDATE_S)
            yield Point(schema.ASSETS, account_tags(a), fields, START_MS + i * UPDATE_S * 1000 + a)


def detail(rng: random.Random) -> Iterator[Point]:
    steps = HOURS * 3600 // UPDATE_S
    names = [schema.DETAIL_FIELDS[k] for k in ("a", "f", "e", "tl", "b")]
    for a in range(ACCOUNTS):
        for currency in CURRENCIES:
            tags = (*account_tags(a), (schema.TAG_CURRENCY, currency))
            values = {name: list(walk(rng, steps, 1e3 * (a + 1))) for name in names}
            for i in range(steps):
                fields = {name: v[i] for name, v in values.items()}
                fields.update(u=100_000 + a, refresh_time=START_MS // 1000 + i * UPDATE_S)
                yield Point(schema.ASSET_DETAIL, tags, fields, START_MS + i * UPDATE_S * 1000 + a)


def account_state(rng: random.Random) -> Iterator[Point]:
    steps = HOURS * 3600 // STATS_S
    for a in range(ACCOUNTS):
        equity = list(walk(rng, steps, 1e5 * (a + 1)))
        for i in range(steps):
            fields: dict[str, float | int] = {
                schema.STATE_CONNECTED: 1,
                schema.STATE_SESSION: schema.SESSION_CONNECTED,
                schema.STATE_SECONDS_SINCE_UPDATE: float((i * STATS_S) % UPDATE_S),
                schema.STATE_SECONDS_SINCE_FRAME: round(rng.random() * 20, 3),
                schema.MAINTENANCE_MARGIN_RATE: 20.1,
                schema.INITIAL_MARGIN_RATE: 18.56,
                schema.EQUITY: equity[i],
                schema.LIABILITIES: equity[i] / 2,
                schema.TOTAL: equity[i] * 1.5,
                schema.AVAILABLE_MARGIN: equity[i] / 3,
            }
            yield Point(
                schema.ACCOUNT_STATE, account_tags(a), fields, START_MS + i * STATS_S * 1000
            )


def totals(rng: random.Random) -> Iterator[Point]:
    steps = HOURS * 3600 // STATS_S
    equity = list(walk(rng, steps, 1e8))
    for i in range(steps):
        at = START_MS + i * STATS_S * 1000
        broker = {name: equity[i] * (k + 1) for k, name in enumerate(schema.BROKER_TOTAL_FIELDS)}
        yield Point(
            schema.BROKER_TOTALS, shard_tags(), {schema.TOTALS_ACCOUNTS: ACCOUNTS, **broker}, at
        )
        for currency in CURRENCIES:
            fields = {
                name: equity[i] / (k + 2) for k, name in enumerate(schema.CURRENCY_TOTAL_FIELDS)
            }
            tags = (*shard_tags(), (schema.TAG_CURRENCY, currency))
            yield Point(
                schema.CURRENCY_TOTALS, tags, {schema.TOTALS_ACCOUNTS: ACCOUNTS, **fields}, at
            )


KINDS = {"assets": assets, "asset_detail": detail, "account_state": account_state, "totals": totals}


class ColdInflux(InfluxServer):
    """InfluxDB that writes its cache to compacted TSM files after 1 s of quiet."""

    def _config(self) -> Path:
        path = super()._config()
        path.write_text(
            path.read_text().replace(
                "query-log-enabled = false",
                'query-log-enabled = false\n  cache-snapshot-write-cold-duration = "1s"\n'
                '  compact-full-write-cold-duration = "1s"',
            )
        )
        return path


def disk_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*.tsm") if f.is_file())


def main() -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp, influx_server(Path(tmp)) as plain:
        plain.stop()
        server = ColdInflux(plain.root, plain.port)
        server.start()
        try:
            print("| measurement | points | TSM bytes | bytes/point |")
            print("|---|---|---|---|")
            for db, make in KINDS.items():
                server.create_database(db)
                lines = [line for p in make(rng) if (line := encode(p)) is not None]
                for at in range(0, len(lines), 50_000):
                    httpx.post(
                        f"{server.url}/write",
                        params={"db": db, "precision": "ms"},
                        content="\n".join(lines[at : at + 50_000]),
                        timeout=60,
                    ).raise_for_status()
                deadline = time.monotonic() + 120
                size = 0
                while time.monotonic() < deadline:  # until snapshot + full compaction settle
                    time.sleep(3)
                    now = disk_bytes(Path(tmp) / "data" / db)
                    if now and now == size:
                        break
                    size = now
                print(f"| {db} | {len(lines):,} | {size:,} | {size / len(lines):.1f} |")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
