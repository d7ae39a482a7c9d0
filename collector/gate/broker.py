"""BrokerClient: Gate's Broker REST API over one ``httpx.AsyncClient`` (under trio).

What it takes care of, so callers do not:

* signing every attempt afresh (``KEY`` / ``Timestamp`` / ``SIGN``) over the path
  and query exactly as they go on the wire;
* clock skew: each answer's ``Date`` header tells how far our clock is off
  Gate's; timestamps are corrected by it, a skew over 30 s is logged, and a
  ``REQUEST_EXPIRED`` is retried once with the corrected time;
* rate limits: ``X-Gate-RateLimit-*`` headers are remembered per endpoint; when
  none remain, or on a 429, the client waits until the reset instead of retrying
  in a storm;
* 5xx and network errors: capped exponential backoff with jitter, for idempotent
  calls only (transfers are made idempotent by their ``client_order_id``).
"""

from __future__ import annotations

import email.utils
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx
import orjson
import trio
from pydantic import BaseModel, ValidationError

from collector.backoff import backoff_delay
from collector.gate import signing
from collector.gate.errors import (
    BadResponseError,
    ClockSkewError,
    GateAPIError,
    GateError,
    RateLimitedError,
    ServerError,
    error_for,
)
from collector.gate.models import (
    ApiKeyInfo,
    BrokerInfo,
    CreatedApiKey,
    KeyPermission,
    KeySpec,
    SubAccount,
    SubAccountSpec,
    Transfer,
    TransferDirection,
    TransferSpec,
)
from collector.gate.quota import Quotas
from collector.logging import get_logger

log = get_logger(__name__)

SKEW_WARNING_SECONDS: Final = 30.0
# The Date header has whole seconds: below this, a "skew" is only that rounding.
SKEW_RESOLUTION_SECONDS: Final = 2.0
DEFAULT_PAGE_SIZE: Final = 100
# A list that has not ended after this many pages is Gate looping, not a broker:
# 10,000 pages of 100 is a million sub-accounts.
MAX_PAGES: Final = 10_000
# Wait this much past a rate-limit reset: the header has ms resolution, clocks jitter.

M = TypeVar("M", bound=BaseModel)
_ID_SEGMENT: Final = re.compile(r"[0-9]+|[0-9a-fA-F]{16,}")


class GateUnavailableError(GateError):
    """Gate could not be reached (network error) after the allowed retries."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    rate_limit_waits: int = 5
    # Gate's windows are 10 s; a reset announced further out than this is not believed.
    max_rate_limit_wait: float = 60.0


class BrokerClient:
    """Every endpoint of the Broker API document, typed."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        creds: signing.ApiCredentials,
        *,
        base_url: str,
        retry: RetryPolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self._creds = creds
        self._base = base_url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._quotas = Quotas(
            lambda: self._wall_clock() + self.clock_skew,
            self._rng,
            self._retry.max_rate_limit_wait,
        )
        self.clock_skew = 0.0
        self.requests_sent = 0

    # -- endpoints ---------------------------------------------------------

    async def info(self) -> BrokerInfo:
        """``GET /broker/info``."""
        return _parse(BrokerInfo, await self._call("GET", "/broker/info"))

    async def create_sub_account(self, spec: SubAccountSpec) -> SubAccount:
        """``POST /broker/sub_accounts`` (not retried: it is not idempotent)."""
        data = await self._call("POST", "/broker/sub_accounts", body=spec, idempotent=False)
        return _parse(SubAccount, data)

    async def list_sub_accounts(
        self, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[SubAccount]:
        """``GET /broker/sub_accounts``, page by page."""
        async for row in self._pages("/broker/sub_accounts", {}, page_size):
            yield _parse(SubAccount, row)

    async def get_sub_account(self, user_id: int) -> SubAccount:
        """``GET /broker/sub_accounts/{id}``."""
        return _parse(SubAccount, await self._call("GET", f"/broker/sub_accounts/{user_id}"))

    async def update_sub_account(self, user_id: int, spec: SubAccountSpec) -> SubAccount:
        """``PUT /broker/sub_accounts/{id}``."""
        data = await self._call("PUT", f"/broker/sub_accounts/{user_id}", body=spec)
        return _parse(SubAccount, data)

    async def enable_sub_account(self, user_id: int) -> None:
        """``POST /broker/sub_accounts/{id}/enable``."""
        await self._call("POST", f"/broker/sub_accounts/{user_id}/enable")

    async def disable_sub_account(self, user_id: int) -> None:
        """``POST /broker/sub_accounts/{id}/disable``."""
        await self._call("POST", f"/broker/sub_accounts/{user_id}/disable")

    async def create_key(
        self,
        user_id: int,
        name: str,
        perms: list[KeyPermission],
        ip_whitelist: list[str] | None = None,
        *,
        key_type: int | None = None,
    ) -> CreatedApiKey:
        """``POST /broker/sub_account_keys``: the only answer that carries the secret.

        ``key_type`` is the body's ``type`` (left out when None).
        """
        spec = KeySpec(
            user_id=str(user_id),
            name=name,
            perms=perms,
            ip_whitelist=ip_whitelist or [],
            type=key_type,
        )
        data = await self._call("POST", "/broker/sub_account_keys", body=spec, idempotent=False)
        return _parse(CreatedApiKey, data)

    async def list_keys(self, user_id: int) -> AsyncIterator[ApiKeyInfo]:
        """``GET /broker/sub_account_keys/{id}`` (one page: the API has no paging here)."""
        data = await self._call("GET", f"/broker/sub_account_keys/{user_id}")
        for row in _as_list(data, "list_keys"):
            yield _parse(ApiKeyInfo, row)

    async def get_key(self, user_id: int, key: str) -> ApiKeyInfo:
        """``GET /broker/sub_account_keys/{id}/{key}``."""
        data = await self._call("GET", f"/broker/sub_account_keys/{user_id}/{key}")
        return _parse(ApiKeyInfo, data)

    async def update_key(
        self,
        user_id: int,
        key: str,
        name: str,
        perms: list[KeyPermission],
        ip_whitelist: list[str] | None = None,
    ) -> None:
        """``PUT /broker/sub_account_keys/{id}/{key}``."""
        spec = KeySpec(
            user_id=str(user_id), name=name, perms=perms, ip_whitelist=ip_whitelist or []
        )
        await self._call("PUT", f"/broker/sub_account_keys/{user_id}/{key}", body=spec)

    async def delete_key(self, user_id: int, key: str) -> None:
        """``DELETE /broker/sub_account_keys/{id}/{key}``."""
        await self._call("DELETE", f"/broker/sub_account_keys/{user_id}/{key}")

    async def create_transfer(
        self,
        currency: str,
        sub_account: int,
        direction: TransferDirection,
        amount: str,
        *,
        sub_account_type: str = "spot",
        client_order_id: str | None = None,
    ) -> str:
        """``POST /broker/sub_account_transfers``; returns the ``client_order_id``.

        The id is generated when not given and sent on every attempt, so a retry
        after a lost answer cannot move the money twice.
        """
        spec = TransferSpec(
            currency=currency,
            sub_account=str(sub_account),
            direction=direction,
            amount=amount,
            sub_account_type=sub_account_type,
            client_order_id=client_order_id or uuid.uuid4().hex,
        )
        await self._call("POST", "/broker/sub_account_transfers", body=spec)
        return spec.client_order_id

    async def list_transfers(
        self,
        sub_uid: int | None = None,
        start: int | None = None,
        end: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[Transfer]:
        """``GET /broker/sub_account_transfers``, page by page (range at most 30 days)."""
        params: dict[str, Any] = {}
        if sub_uid is not None:
            params["sub_uid"] = str(sub_uid)
        if start is not None:
            params["from"] = start
        if end is not None:
            params["to"] = end
        async for row in self._pages("/broker/sub_account_transfers", params, page_size):
            yield _parse(Transfer, row)

    # -- transport ---------------------------------------------------------

    async def _pages(self, path: str, params: dict[str, Any], page_size: int) -> AsyncIterator[Any]:
        offset = 0
        previous: list[Any] | None = None  # the ids of the page before
        for number in range(1, MAX_PAGES + 1):
            page = _as_list(
                await self._call(
                    "GET", path, params={**params, "limit": page_size, "offset": offset}
                ),
                path,
            )
            ids = [_row_id(row) for row in page]
            if ids and ids == previous:
                raise BadResponseError(
                    f"GET {path}: page {number} (offset {offset}) repeats the page before; "
                    "Gate's paging is broken, stopping instead of looping forever"
                )
            for row in page:
                yield row
            if len(page) < page_size:
                return
            previous = ids
            offset += len(page)
        raise BadResponseError(
            f"GET {path}: more than {MAX_PAGES} pages of {page_size}; Gate's paging looks "
            "broken, stopping instead of looping forever"
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: BaseModel | None = None,
        idempotent: bool = True,
    ) -> Any:
        content = orjson.dumps(body.model_dump(exclude_none=True)) if body is not None else b""
        response = await self._send_with_policy(method, path, params, content, idempotent)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return orjson.loads(response.content)
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
            self._observe_skew(response)
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
        now = self._wall_clock() + self.clock_skew
        request.headers.update(
            signing.rest_headers(self._creds, method, raw_path, query, content, now)
        )
        self.requests_sent += 1
        return await self._http.send(request)

    def _observe_skew(self, response: httpx.Response) -> None:
        date = response.headers.get("Date")
        if not date:
            return
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        # Date is truncated to the second: the server's clock is half a second on, on average.
        estimate = server + 0.5 - self._wall_clock()
        skew = estimate if abs(estimate) >= SKEW_RESOLUTION_SECONDS else 0.0
        if (
            abs(skew - self.clock_skew) >= SKEW_RESOLUTION_SECONDS
            and abs(skew) > SKEW_WARNING_SECONDS
        ):
            log.warning(
                "clock_skew",
                skew_seconds=round(skew, 1),
                hint="this machine's clock is off Gate's; signatures are corrected, "
                "but fix the clock (NTP / systemd-timesyncd)",
            )
        self.clock_skew = skew

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
    label, message = "", response.text[:200]
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        label = str(body.get("label", ""))
        message = str(body.get("message", ""))
    return error_for(response.status_code, label, message, request=endpoint)


def _row_id(row: Any) -> Any:
    """What identifies a listed row (the whole row when it names no id)."""
    if isinstance(row, dict):
        return row.get("user_id", row.get("id", row))
    return row


def _as_list(data: Any, what: str) -> list[Any]:
    if not isinstance(data, list):
        raise BadResponseError(
            f"{what}: expected a JSON array from Gate, got {type(data).__name__}"
        )
    return data


def _parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise BadResponseError(f"Gate's {model.__name__} answer is malformed: {problems}") from None
