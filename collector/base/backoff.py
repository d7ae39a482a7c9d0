"""Capped exponential backoff with jitter, the one retry rhythm of the collector."""

from __future__ import annotations

import random


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1, 2, ...).

    The ceiling doubles from ``base`` up to ``cap``; the wait is drawn from its
    upper half ("equal jitter"), so retries spread out but never come too soon.
    """
    ceiling = min(cap, base * 2 ** (max(failures, 1) - 1))
    return rng.uniform(ceiling / 2, ceiling)
