"""Which accounts a shard owns: rendezvous (highest-random-weight) hashing.

Every shard ``k`` of ``N`` gives account ``u`` the weight
``blake2b(f"{k}:{u}")``; the shard with the highest weight owns the account.
Going from ``N`` to ``N + 1`` shards moves only the accounts the new shard wins,
about ``1 / (N + 1)`` of them, where ``md5 mod N`` moved almost all (each moved
account needs a new key, and Gate creates about 8 a second). The hash is stable
across processes, Python versions and hosts (``hash()`` is not).

Pure: no I/O, no clock. The supervisor asks :func:`owns`; ``gate-collector plan``
asks :func:`shard_sizes` and :func:`smallest_safe_shards`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass


def weight(shard: int, user_id: int) -> int:
    """The stable pseudo-random weight of ``user_id`` on ``shard``."""
    digest = hashlib.blake2b(f"{shard}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(user_id: int, count: int) -> int:
    """The shard (``0 <= k < count``) that owns ``user_id``."""
    if count < 1:
        raise ValueError(f"shard count must be >= 1, got {count}")
    return max(range(count), key=lambda shard: weight(shard, user_id))


def owns(user_id: int, index: int, count: int) -> bool:
    """True when shard ``index`` of ``count`` owns ``user_id``."""
    return owner(user_id, count) == index


def shard_sizes(user_ids: Iterable[int], count: int) -> list[int]:
    """How many of ``user_ids`` each of ``count`` shards owns."""
    sizes = [0] * count
    for user_id in user_ids:
        sizes[owner(user_id, count)] += 1
    return sizes


def smallest_safe_shards(user_ids: Iterable[int], capacity: int) -> int:
    """The smallest shard count whose fullest shard holds at most ``capacity`` accounts."""
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    ids = list(user_ids)
    count = max(1, math.ceil(len(ids) / capacity))
    while max(shard_sizes(ids, count)) > capacity:
        count += 1
    return count


@dataclass(frozen=True)
class Plan:
    """What ``gate-collector plan`` prints: sizes against the capacity of one shard."""

    accounts: int
    shards: int
    capacity: int
    sizes: list[int]
    safe_shards: int

    @property
    def worst(self) -> int:
        """The fullest shard's account count."""
        return max(self.sizes)

    @property
    def headroom(self) -> int:
        """Free sessions on the fullest shard; negative: accounts left out."""
        return self.capacity - self.worst

    @property
    def left_out(self) -> int:
        """Accounts that get no session (all shards together)."""
        return sum(max(0, size - self.capacity) for size in self.sizes)


def plan(user_ids: Iterable[int], shards: int, capacity: int) -> Plan:
    """Sizes of ``shards`` shards and the smallest safe count for ``capacity`` per shard."""
    ids = list(user_ids)
    return Plan(
        accounts=len(ids),
        shards=shards,
        capacity=capacity,
        sizes=shard_sizes(ids, shards),
        safe_shards=smallest_safe_shards(ids, capacity),
    )
