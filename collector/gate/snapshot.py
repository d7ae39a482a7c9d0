"""``GET /unified/accounts`` with a sub-account's own key, over the REST transport.

:class:`SnapshotClient` sends through :class:`~collector.gate.transport.RestTransport`
like every other REST call: signed afresh on each attempt, its clock corrected by
Gate's ``Date``, a 429 waited out as told (``Retry-After``), errors parsed by
:mod:`collector.gate.errors`. Gate's limits are per user id, so each sub-account's
key has a transport (and a quota) of its own; they share the HTTP client and the
clock's correction. A 5xx or a network error is not retried here: the snapshot
scheduler backs off and asks again.

The body becomes a :class:`~collector.gate.unified.UnifiedAccount` (lenient where
Gate is; a body that is no JSON object is a one-line error). Gate's answer for an
account that is not in unified mode is not documented: a body whose mode says
``classic``, or a refusal naming unified mode
(:attr:`~collector.gate.errors.Refusal.NOT_UNIFIED`), raises :class:`NotUnifiedError`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

import httpx

from collector.gate.errors import GateAPIError, GateError, Refusal
from collector.gate.signing import ApiCredentials
from collector.gate.transport import GateClock, RestTransport, RetryPolicy
from collector.gate.unified import PATH, UnifiedAccount

# No retry of a 5xx or a network error inside a snapshot: the scheduler's backoff
# does that. One 429 is waited out as Gate tells (a second is the scheduler's failure:
# a snapshot never holds one of its places for minutes), and REQUEST_EXPIRED re-signed.
RETRY: Final = RetryPolicy(attempts=1, rate_limit_waits=1)
# Transports with no quota to remember are dropped when the table has doubled
# (keys replaced, accounts gone), so it never grows without bound.
PRUNE_FLOOR: Final = 1024


class NotUnifiedError(GateError):
    """The account is not in unified account mode: there is no unified data to read."""

    def __init__(self, message: str, mode: str | None = None) -> None:
        super().__init__(message)
        self.mode = mode  # the body's mode when it said so ("classic")


class SnapshotClient:
    """``GET /unified/accounts`` with a sub-account's own key, over the shared httpx client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        wall_clock: Callable[[], float] = time.time,
        *,
        retry: RetryPolicy = RETRY,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self._base = base_url
        self._retry = retry
        self._rng = rng or random.Random()
        self._clock = GateClock(wall_clock)  # one correction for every key
        self._transports: dict[ApiCredentials, RestTransport] = {}
        self._prune_at = PRUNE_FLOOR
        self._dropped_requests = 0

    @property
    def requests_sent(self) -> int:
        """Requests put on the wire so far (every attempt counts)."""
        return self._dropped_requests + sum(t.requests_sent for t in self._transports.values())

    @property
    def keys_held(self) -> int:
        """How many keys have a transport now (those with no quota counting are dropped)."""
        return len(self._transports)

    async def fetch(self, creds: ApiCredentials) -> UnifiedAccount:
        """The body; GateAPIError / NotUnifiedError / GateError on a refusal or a bad answer."""
        body, _ = await self.read(creds)
        return body

    async def read(self, creds: ApiCredentials) -> tuple[UnifiedAccount, float]:
        """The body and when it was read (Unix seconds on Gate's clock); errors as fetch."""
        try:
            answer = await self._transport(creds).read("GET", PATH)
        except GateAPIError as exc:
            if exc.refusal is Refusal.NOT_UNIFIED:
                raise NotUnifiedError(
                    f"not in unified account mode: {exc.label} {exc.message}"
                ) from None
            raise
        body = UnifiedAccount.parse(answer.data)
        mode = body.classic_mode
        if mode is not None:
            raise NotUnifiedError(f"not in unified account mode (mode {mode!r})", mode)
        return body, answer.read_at

    def _transport(self, creds: ApiCredentials) -> RestTransport:
        """The key's own transport: Gate counts each user's requests apart."""
        transport = self._transports.get(creds)
        if transport is None:
            if len(self._transports) >= self._prune_at:
                self._prune()
            transport = RestTransport(
                self._http,
                creds,
                base_url=self._base,
                retry=self._retry,
                rng=self._rng,
                clock=self._clock,
            )
            self._transports[creds] = transport
        return transport

    def _prune(self) -> None:
        """Forget the transports with no quota to remember (amortised: the table doubles)."""
        kept, dropped = {}, 0
        for creds, transport in self._transports.items():
            if transport.quota_pending():
                kept[creds] = transport
            else:
                dropped += transport.requests_sent
        self._dropped_requests += dropped
        self._transports = kept
        self._prune_at = max(PRUNE_FLOOR, 2 * len(self._transports))
