"""RestTransport: signed Gate REST requests over one ``httpx.AsyncClient`` (under trio).

What it takes care of, so the endpoints (:mod:`collector.gate.broker`,
:mod:`collector.gate.snapshot`) do not:

* signing every attempt afresh (``KEY`` / ``Timestamp`` / ``SIGN``) over the path
  and query exactly as they go on the wire;
* clock skew: each answer's ``Date`` header tells how far our clock is off
  Gate's (:class:`GateClock`, which transports may share); timestamps are
  corrected by it, a skew over 30 s is logged, and a ``REQUEST_EXPIRED`` is
  retried once with the corrected time; :meth:`RestTransport.read` also says when
  an answer was read, on Gate's clock;
* rate limits: ``X-Gate-RateLimit-*`` headers are remembered per endpoint
  (:mod:`collector.gate.quota`); when none remain, or on a 429, the transport
  waits until the reset instead of retrying in a storm;
* 5xx and network errors: capped exponential backoff with jitter, for idempotent
  calls only (transfers are made idempotent by their ``client_order_id``).
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
import trio
from pydantic import BaseModel

from collector.base.backoff import backoff_delay
from collector.base.logging import get_logger
from collector.gate import signing
from collector.gate.errors import (
    BadResponseError,
    ClockSkewError,
    GateAPIError,
    GateError,
    RateLimitedError,
    ServerError,
    error_body,
    error_for,
)
from collector.gate.quota import Quotas

log = get_logger(__name__)

SKEW_WARNING_SECONDS: Final = 30.0
# The Date header has whole seconds: below this, a "skew" is only that rounding.
SKEW_RESOLUTION_SECONDS: Final = 2.0

_ID_SEGMENT: Final = re.compile(r"[0-9]+|[0-9a-fA-F]{16,}")


class GateUnavailableError(GateError):
    """Gate could not be reached (network error) after the allowed retries."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A decoded JSON answer (None when empty) and when it was read, on Gate's clock."""

    data: Any
    read_at: float


class GateClock:
    """Our clock corrected to Gate's by the ``Date`` of its answers; one for many transports."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self.wall_clock = wall_clock
        self.skew = 0.0  # seconds Gate's clock is ahead of ours

    def now(self) -> float:
        """Gate's time as we best know it (Unix seconds)."""
        return self.wall_clock() + self.skew

    def observe(self, date: str | None) -> None:
        """Correct the skew by an answer's ``Date``; below its whole-second resolution, none."""
        if not date:
            return
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        # Date is truncated to the second: the server's clock is half a second on, on average.
        estimate = server + 0.5 - self.wall_clock()
        skew = estimate if abs(estimate) >= SKEW_RESOLUTION_SECONDS else 0.0
        if abs(skew - self.skew) >= SKEW_RESOLUTION_SECONDS and abs(skew) > SKEW_WARNING_SECONDS:
            log.warning(
                "clock_skew",
                skew_seconds=round(skew, 1),
                hint="this machine's clock is off Gate's; signatures are corrected, "
                "but fix the clock (NTP / systemd-timesyncd)",
            )
        self.skew = skew


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    rate_limit_waits: int = 5
    # Gate's windows are 10 s; a reset announced further out than this is not believed.
    max_rate_limit_wait: float = 60.0


class RestTransport:
    """One signed JSON call at a time: retries, rate-limit waits, clock-skew correction."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        creds: signing.ApiCredentials,
        *,
        base_url: str,
        retry: RetryPolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        clock: GateClock | None = None,
    ) -> None:
        """``clock``: a correction shared with other transports (else one of its own)."""
        self._http = http
        self._creds = creds
        self._base = base_url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._clock = clock or GateClock(wall_clock)
        self._rng = rng or random.Random()
        self._quotas = Quotas(self._clock.now, self._rng, self._retry.max_rate_limit_wait)
        self.requests_sent = 0

    @property
    def clock_skew(self) -> float:
        """Seconds Gate's clock is ahead of ours, as its last ``Date`` header said."""
        return self._clock.skew

    def quota_pending(self) -> bool:
        """Whether a quota Gate announced is still counting (forgetting it loses a limit)."""
        return self._quotas.pending()

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: BaseModel | None = None,
        idempotent: bool = True,
    ) -> Any:
        """Send ``body`` (as JSON) to ``path``; the decoded JSON answer (None when empty)."""
        answer = await self.read(method, path, params=params, body=body, idempotent=idempotent)
        return answer.data

    async def read(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: BaseModel | None = None,
        idempotent: bool = True,
    ) -> Answer:
        """As :meth:`call`, with when the answer was read on Gate's (corrected) clock."""
        content = orjson.dumps(body.model_dump(exclude_none=True)) if body is not None else b""
        response = await self._send_with_policy(method, path, params, content, idempotent)
        read_at = self._clock.now()  # corrected by this very answer's Date
        if response.status_code == 204 or not response.content:
            return Answer(None, read_at)
        try:
            return Answer(orjson.loads(response.content), read_at)
        except orjson.JSONDecodeError:
            raise BadResponseError(
                f"{method} {path}: Gate answered {response.status_code} with a body that is "
                f"not JSON: {response.content[:200]!r}"
            ) from None

    async def _send_with_policy(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        content: bytes,
        idempotent: bool,
    ) -> httpx.Response:
        endpoint = _endpoint(method, path)
        failures = rate_waits = 0
        skew_retried = False
        while True:
            await self._quotas.take(endpoint)
            try:
                response = await self._send_once(method, path, params, content)
            except httpx.TransportError as exc:
                failures += 1
                if not idempotent or failures >= self._retry.attempts:
                    raise GateUnavailableError(
                        f"{endpoint}: cannot reach Gate at {self._base} ({exc!r}); "
                        "check gate.rest_url and the network"
                    ) from None
                await self._backoff(failures, endpoint, repr(exc))
                continue
            except httpx.HTTPError as exc:  # an answer we cannot read (bad gzip, redirects)
                raise BadResponseError(
                    f"{endpoint}: unreadable answer from Gate ({exc!r})"
                ) from None
            self._clock.observe(response.headers.get("Date"))
            self._quotas.observe(endpoint, response.headers)
            if response.is_success:
                return response
            error = _error(response, endpoint)
            if isinstance(error, RateLimitedError) and rate_waits < self._retry.rate_limit_waits:
                rate_waits += 1
                self._quotas.refused(endpoint, response.headers)
                continue
            if isinstance(error, ClockSkewError) and not skew_retried:
                skew_retried = True
                continue
            if isinstance(error, ServerError) and idempotent:
                failures += 1
                if failures < self._retry.attempts:
                    await self._backoff(failures, endpoint, error.label or str(error.status))
                    continue
            raise error

    async def _send_once(
        self, method: str, path: str, params: dict[str, Any] | None, content: bytes
    ) -> httpx.Response:
        url = f"{self._base}{path}"
        if params:
            url += "?" + signing.encode_query(params)
        request = self._http.build_request(
            method, url, content=content, headers={"Content-Type": "application/json"}
        )
        raw_path, _, query = request.url.raw_path.decode("ascii").partition("?")
        now = self._clock.now()
        request.headers.update(
            signing.rest_headers(self._creds, method, raw_path, query, content, now)
        )
        self.requests_sent += 1
        return await self._http.send(request)

    async def _backoff(self, failures: int, endpoint: str, reason: str) -> None:
        delay = backoff_delay(failures, self._retry.base_delay, self._retry.max_delay, self._rng)
        log.warning(
            "gate_retry",
            endpoint=endpoint,
            reason=reason,
            attempt=failures,
            wait_seconds=round(delay, 2),
        )
        await trio.sleep(delay)


def _endpoint(method: str, path: str) -> str:
    """``GET /broker/sub_account_keys/{id}``: rate limits are per endpoint, not per id."""
    parts = ["{}" if _ID_SEGMENT.fullmatch(p) else p for p in path.split("/")]
    return f"{method} {'/'.join(parts)}"


def _error(response: httpx.Response, endpoint: str) -> GateAPIError:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    label, message = error_body(body, response.text[:200])
    return error_for(response.status_code, label, message, request=endpoint)
