"""Per-endpoint rate-limit bookkeeping of the Broker REST client.

Gate's ``X-Gate-RateLimit-*`` headers are remembered per endpoint; a request
takes one from its endpoint's quota and, when none is left (or after a 429),
waits until the reset instead of retrying in a storm. Outside a limit Gate's
reset is "just the current timestamp", so a count whose reset is now or past is
kept for one window (10 s) rather than forgotten. Header parsing is pure
(:mod:`collector.gate.ratelimit`); this holds the state and the waits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import trio

from collector.base.logging import get_logger
from collector.gate import ratelimit

log = get_logger(__name__)

RESET_MARGIN_SECONDS: Final = 0.05


@dataclass
class _Limit:
    remaining: int
    reset_at: float  # wall-clock seconds, as Gate said it (to match concurrent answers)
    deadline: float  # the same instant on trio's clock: the waits are timed by it


class Quotas:
    """The known quota of each endpoint; ``clock`` is our clock corrected to Gate's."""

    def __init__(self, clock: Callable[[], float], rng: random.Random, max_wait: float) -> None:
        self._clock = clock
        self._rng = rng
        self._max_wait = max_wait
        self._limits: dict[str, _Limit] = {}

    def observe(self, endpoint: str, headers: Mapping[str, str]) -> None:
        """Remember the quota an answer announced."""
        remain = headers.get("X-Gate-RateLimit-Requests-Remain")
        reset = ratelimit.reset_timestamp(headers.get("X-Gate-RateLimit-Reset-Timestamp"))
        if remain is None or not remain.isdigit() or reset is None:
            return
        now = self._clock()
        if reset <= now:
            # Outside a limit Gate's reset is "just the current timestamp": the window's
            # end is unknown, so the count is kept for one window (Gate's are 10 s).
            reset = now + ratelimit.MIN_REFUSAL_WAIT
        known = self._limits.get(endpoint)
        remaining = int(remain)
        if known is not None and abs(known.reset_at - reset) < 0.5:
            # Answers to concurrent requests arrive out of order: trust the lowest count.
            remaining = min(remaining, known.remaining)
        self._limits[endpoint] = _Limit(remaining, reset, self._deadline(reset))

    async def take(self, endpoint: str) -> None:
        """Take one request from the endpoint's quota, sleeping until its reset if none is left."""
        while (limit := self._limits.get(endpoint)) is not None:
            wait = limit.deadline + RESET_MARGIN_SECONDS - trio.current_time()
            if wait <= 0:
                del self._limits[endpoint]  # a new window: the next answer tells its quota
                return
            if limit.remaining > 0:
                limit.remaining -= 1
                return
            log.debug("rate_limit_wait", endpoint=endpoint, seconds=round(wait, 2))
            await trio.sleep(min(wait, self._max_wait))

    def pending(self) -> bool:
        """Whether a quota is still counting (its reset not yet passed)."""
        now = trio.current_time()
        return any(limit.deadline + RESET_MARGIN_SECONDS > now for limit in self._limits.values())

    def refused(self, endpoint: str, headers: Mapping[str, str]) -> None:
        """After a 429: every task calling this endpoint waits, not just this one."""
        now = self._clock()
        reset = ratelimit.reset_timestamp(headers.get("X-Gate-RateLimit-Reset-Timestamp"))
        retry = ratelimit.retry_after(headers.get("Retry-After"), now)
        wait = ratelimit.refusal_wait(
            reset=reset,
            retry=retry,
            now=now,
            jitter=self._rng.random(),
            cap=self._max_wait,
        )
        log.warning(
            "rate_limited", endpoint=endpoint, reset=reset, retry_after=retry, wait_seconds=wait
        )
        # A reset that is now or past (Gate's value outside a limit) still waits a window.
        self._limits[endpoint] = _Limit(0, now + wait, trio.current_time() + wait)

    def _deadline(self, reset_at: float) -> float:
        """A wall-clock reset as a trio deadline, so waits follow trio's (test) clock."""
        return trio.current_time() + (reset_at - self._clock())
