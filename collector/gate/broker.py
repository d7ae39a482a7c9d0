"""BrokerClient: every endpoint of Gate's Broker REST API, typed.

Each endpoint is a thin method over :class:`~collector.gate.transport.RestTransport`
(signing, retries, rate limits, clock skew) and :mod:`~collector.gate.paging`;
here a call is only its method, path, body and answer model.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from collector.gate import paging, signing
from collector.gate.errors import BadResponseError
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
from collector.gate.paging import DEFAULT_PAGE_SIZE
from collector.gate.transport import GateUnavailableError, RestTransport, RetryPolicy

__all__ = ["DEFAULT_PAGE_SIZE", "BrokerClient", "GateUnavailableError", "RetryPolicy"]

M = TypeVar("M", bound=BaseModel)


class BrokerClient:
    """Every endpoint of the Broker API document, typed, over one :class:`RestTransport`."""

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
        self._rest = RestTransport(
            http, creds, base_url=base_url, retry=retry, wall_clock=wall_clock, rng=rng
        )
        self._call = self._rest.call

    @property
    def clock_skew(self) -> float:
        """Seconds Gate's clock is ahead of ours, as its last ``Date`` header said."""
        return self._rest.clock_skew

    @property
    def requests_sent(self) -> int:
        """Requests put on the wire so far (every attempt counts)."""
        return self._rest.requests_sent

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
        for row in paging.as_list(data, "list_keys"):
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

    # -- paging ------------------------------------------------------------

    def _pages(self, path: str, params: dict[str, Any], page_size: int) -> AsyncIterator[Any]:
        async def fetch(query: dict[str, Any]) -> Any:
            return await self._call("GET", path, params=query)

        return paging.pages(fetch, path, params, page_size)


def _parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise BadResponseError(f"Gate's {model.__name__} answer is malformed: {problems}") from None
