"""The Broker REST API of the Gate look-alike, strict as Gate is.

Every request must carry ``KEY`` / ``Timestamp`` / ``SIGN`` made with the broker
key over the path and query exactly as sent; the timestamp must be within 60 s
of the simulator's clock. Errors are Gate's ``{"label", "message"}`` bodies with
Gate's status codes; each endpoint is rate limited with Gate's headers.

The routes themselves are in :mod:`.rest_accounts` (broker info, sub-accounts,
transfers), :mod:`.rest_keys` (sub-account keys) and :mod:`.rest_unified` (the
unified account, read with the sub-account's own key); this module is the table
of routes and what comes before any of them: authentication and rate limits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import orjson
import trio

from collector.devtools.simulator.httpserver import HttpRequest, HttpResponse
from collector.devtools.simulator.rest_accounts import (
    create_sub_account,
    create_transfer,
    get_sub_account,
    info,
    list_sub_accounts,
    list_transfers,
    set_status,
    update_sub_account,
)
from collector.devtools.simulator.rest_base import Route, SimError
from collector.devtools.simulator.rest_keys import (
    create_key,
    delete_key,
    get_key,
    list_keys,
    update_key,
)
from collector.devtools.simulator.rest_unified import unified_accounts
from collector.devtools.simulator.state import BrokerState
from collector.gate import signing

PREFIX: Final = signing.REST_PREFIX
TIME_WINDOW: Final = 60.0

_ID: Final = r"([^/]+)"
ROUTES: Final[list[tuple[str, re.Pattern[str], str, Route]]] = [
    ("GET", re.compile(r"/broker/info"), "info", info),
    ("POST", re.compile(r"/broker/sub_accounts"), "sub_accounts", create_sub_account),
    ("GET", re.compile(r"/broker/sub_accounts"), "sub_accounts", list_sub_accounts),
    ("GET", re.compile(rf"/broker/sub_accounts/{_ID}"), "sub_account", get_sub_account),
    ("PUT", re.compile(rf"/broker/sub_accounts/{_ID}"), "sub_account", update_sub_account),
    ("POST", re.compile(rf"/broker/sub_accounts/{_ID}/enable"), "enable", set_status("enabled")),
    ("POST", re.compile(rf"/broker/sub_accounts/{_ID}/disable"), "disable", set_status("disabled")),
    ("POST", re.compile(r"/broker/sub_account_keys"), "keys", create_key),
    ("GET", re.compile(rf"/broker/sub_account_keys/{_ID}"), "keys", list_keys),
    ("GET", re.compile(rf"/broker/sub_account_keys/{_ID}/{_ID}"), "key", get_key),
    ("PUT", re.compile(rf"/broker/sub_account_keys/{_ID}/{_ID}"), "key", update_key),
    ("DELETE", re.compile(rf"/broker/sub_account_keys/{_ID}/{_ID}"), "key", delete_key),
    ("POST", re.compile(r"/broker/sub_account_transfers"), "transfers", create_transfer),
    ("GET", re.compile(r"/broker/sub_account_transfers"), "transfers", list_transfers),
    ("GET", re.compile(r"/unified/accounts"), "unified_accounts", unified_accounts),
]
_CREATE_KEY: Final = ("POST", f"{PREFIX}/broker/sub_account_keys")
# Routes read with a sub-account's own key, not the broker's.
_OWN_KEY_ROUTES: Final = frozenset({"unified_accounts"})


@dataclass
class _Window:
    start: float
    used: int = 0


@dataclass
class RestApi:
    """The request handler: auth, rate limit, fault injection, routing."""

    state: BrokerState
    windows: dict[str, _Window] = field(default_factory=dict)

    def handler(self) -> Callable[[HttpRequest], Awaitable[HttpResponse | None]]:
        """The coroutine for :func:`serve_http`."""

        async def handle(request: HttpRequest) -> HttpResponse | None:
            response = self.handle(request)
            if self.state.key_create_delay and (request.method, request.path) == _CREATE_KEY:
                await trio.sleep(self.state.key_create_delay)  # made, but not answered yet
            return response

        return handle

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        """Answer one request (synchronously: the state is in memory)."""
        try:
            return self._handle(request)
        except SimError as err:
            return _error(err)

    def _handle(self, request: HttpRequest) -> HttpResponse | None:
        if not request.path.startswith(PREFIX + "/"):
            raise SimError(404, "NOT_FOUND", f"no such path: {request.path}")
        path = request.path[len(PREFIX) :]
        route, name, args = self._route(request.method, path)
        user = self._authenticate(request, own_key=name in _OWN_KEY_ROUTES)
        if user is not None:
            args = [str(user), *args]  # own-key routes are about the key's account
        # Gate limits private endpoints per user id: one window per (endpoint, user).
        suffix = f" {user}" if user is not None else ""
        limit_headers = self._rate_limit(f"{request.method} {name}{suffix}")
        self.state.calls[f"{request.method} {name}"] += 1
        fault = self.state.take_fault(path, request.method)
        if fault is not None and not fault.drop_response:
            raise SimError(fault.status, fault.label, "injected fault", fault.text_field)
        result = route(self.state, request, args)
        if fault is not None:
            return None
        status, body = result if isinstance(result, tuple) else (200, result)
        payload = orjson.dumps(body) if body is not None else b""
        return HttpResponse(status, payload, limit_headers)

    @staticmethod
    def _route(method: str, path: str) -> tuple[Route, str, list[str]]:
        known_path = False
        for verb, pattern, name, route in ROUTES:
            match = pattern.fullmatch(path)
            if match:
                known_path = True
                if verb == method:
                    return route, name, list(match.groups())
        if known_path:
            raise SimError(405, "METHOD_NOT_ALLOWED", f"{method} not allowed on {path}")
        raise SimError(404, "NOT_FOUND", f"no such path: {path}")

    def _authenticate(self, request: HttpRequest, own_key: bool = False) -> int | None:
        """Check KEY/Timestamp/SIGN; the sub-account's id when ``own_key`` routes use one."""
        key = request.headers.get("key")
        stamp = request.headers.get("timestamp")
        sign = request.headers.get("sign")
        if not key or not stamp or not sign:
            raise SimError(401, "MISSING_REQUIRED_HEADER", "KEY, Timestamp and SIGN are required")
        secret, user = self.state.broker.secret, None
        if own_key:
            sub_key = self.state.keys.get(key)
            if sub_key is None:
                raise SimError(401, "INVALID_KEY", "Invalid key provided")
            secret, user = sub_key.secret, sub_key.user_id
        elif key != self.state.broker.key:
            if key in self.state.keys:
                raise SimError(403, "FORBIDDEN", "broker permission required")
            else:
                raise SimError(401, "INVALID_KEY", "Invalid key provided")
        try:
            sent = float(stamp)
        except ValueError:
            raise SimError(401, "REQUEST_EXPIRED", "Timestamp is not a number") from None
        if abs(self.state.now() - sent) > TIME_WINDOW:
            raise SimError(
                401,
                "REQUEST_EXPIRED",
                f"gap between request Timestamp and server time exceeds {int(TIME_WINDOW)}",
            )
        expected = signing.rest_signature(
            secret,
            request.method,
            request.path,
            signing.signed_query(request.query),  # Gate checks the query decoded
            request.body,
            stamp,
        )
        if not signing.signatures_match(expected, sign):
            raise SimError(401, "INVALID_SIGNATURE", "Signature mismatch")
        return user

    def _rate_limit(self, endpoint: str) -> dict[str, str]:
        now = self.state.now()
        window = self.windows.get(endpoint)
        if window is None or now >= window.start + self.state.rate_window:
            window = self.windows[endpoint] = _Window(start=now)
        # Seconds, as in Gate's live answers: the window's end once it is used up, and
        # outside a limit "just the current timestamp".
        headers = {
            "X-Gate-RateLimit-Limit": str(self.state.rate_limit),
            "X-Gate-RateLimit-Reset-Timestamp": str(int(now)),
        }
        if window.used >= self.state.rate_limit:
            headers["X-Gate-RateLimit-Requests-Remain"] = "0"
            if not self.state.rate_reset_now:  # else a 429 that says "now" (seen too)
                reset = math.ceil(window.start + self.state.rate_window)
                headers["X-Gate-RateLimit-Reset-Timestamp"] = str(reset)
            raise _RateLimited(headers)
        window.used += 1
        headers["X-Gate-RateLimit-Requests-Remain"] = str(self.state.rate_limit - window.used)
        return headers


class _RateLimited(SimError):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(429, "TOO_MANY_REQUESTS", "Request Rate limit Exceeded")
        self.headers = headers


def _error(err: SimError) -> HttpResponse:
    headers = err.headers if isinstance(err, _RateLimited) else {}
    body = orjson.dumps({"label": err.label, err.text_field: err.message})
    return HttpResponse(err.status, body, headers)
