"""``gate-collector plan``: how accounts spread over shards, before anyone runs them.

Counts each shard's accounts under rendezvous ownership (the same function the
supervisor uses), the fullest shard's headroom against ``per_ip x addresses``
sessions, and the smallest shard count where no shard leaves an account out.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Final

from collector.app.commands import open_broker
from collector.config import load_settings
from collector.supervisor.placement import Plan, plan

# Gate user ids seen in the wild are 8-digit numbers.
ID_RANGE: Final = (10_000_000, 99_999_999)


def random_ids(count: int, seed: int) -> list[int]:
    """``count`` distinct pseudo-random Gate-like user ids, reproducible by ``seed``."""
    return random.Random(seed).sample(range(*ID_RANGE), count)


async def ids_from_gate(config: Path) -> list[int]:
    """The enabled sub-accounts' user ids, as the broker API lists them now."""
    settings = load_settings(config)
    async with open_broker(settings) as broker:
        return [a.gate_id async for a in broker.list_sub_accounts() if a.enabled]


def render(result: Plan, addresses: int) -> str:
    """The report a person reads: one line per shard, then the verdict."""
    lines = [
        f"{result.accounts} accounts over {result.shards} shards; capacity per shard "
        f"{result.capacity} ({result.capacity // addresses} per IP x {addresses} addresses)",
        "shard  accounts  headroom",
    ]
    for index, size in enumerate(result.sizes):
        mark = "  OVER: leaves out " + str(size - result.capacity) if size > result.capacity else ""
        lines.append(f"{index:>5}  {size:>8}  {result.capacity - size:>8}{mark}")
    lines.append(f"worst shard: {result.worst} accounts, headroom {result.headroom}")
    if result.left_out:
        lines.append(f"accounts left out: {result.left_out}")
    lines.append(f"smallest safe shard count: {result.safe_shards}")
    return "\n".join(lines)


async def run(
    *,
    config: Path | None,
    accounts: int | None,
    shards: int,
    per_ip: int,
    addresses: int,
    seed: int,
) -> int:
    """Print the plan; exit 1 when the given shard count leaves accounts out."""
    if config is not None:
        ids = await ids_from_gate(config)
    else:
        assert accounts is not None
        ids = random_ids(accounts, seed)
    result = plan(ids, shards, per_ip * addresses)
    print(render(result, addresses))
    return 1 if result.left_out else 0
