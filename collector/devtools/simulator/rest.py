"""The Broker REST API of the Gate look-alike, strict as Gate is.

Every request must carry ``KEY`` / ``Timestamp`` / ``SIGN`` made with the broker
key over the path and query exactly as sent; the timestamp must be within 60 s
of the simulator's clock. Errors are Gate's ``{"label", "message"}`` bodies with
Gate's status codes; each endpoint is rate limited with Gate's headers.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson

from collector.devtools.simulator.httpserver import HttpRequest, HttpResponse
from collector.devtools.simulator.state import BrokerState
from collector.gate import signing

PREFIX: Final = signing.REST_PREFIX
TIME_WINDOW: Final = 60.0


class SimError(Exception):
    """An error answer in Gate's format."""

    def __init__(self, status: int, label: str, message: str) -> None:
        super().__init__(message)
        self.status, self.label, self.message = status, label, message


Route = Callable[[BrokerState, HttpRequest, list[str]], Any]


def _json(request: HttpRequest) -> dict[str, Any]:
    try:
        body = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        raise SimError(400, "INVALID_PARAM_VALUE", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise SimError(400, "INVALID_PARAM_VALUE", "request body must be a JSON object")
    return body


def _require(body: dict[str, Any], *names: str) -> None:
    for name in names:
        if not isinstance(body.get(name), str) or not body[name]:
            raise SimError(400, "MISSING_REQUIRED_PARAM", f"missing required parameter: {name}")


def _query(request: HttpRequest) -> dict[str, str]:
    return dict(parse_qsl(request.query, keep_blank_values=True))


def _page(rows: list[Any], request: HttpRequest) -> list[Any]:
    q = _query(request)
    try:
        limit = int(q.get("limit", "100"))
        offset = int(q.get("offset", "0"))
    except ValueError:
        raise SimError(400, "INVALID_PARAM_VALUE", "limit and offset must be integers") from None
    if not 1 <= limit <= 1000 or offset < 0:
        raise SimError(400, "INVALID_PARAM_VALUE", "limit must be 1..1000, offset >= 0")
    return rows[offset : offset + limit]


def _account(state: BrokerState, raw: str) -> int:
    if not raw.isdigit() or int(raw) not in state.accounts:
        raise SimError(404, "SUB_ACCOUNT_NOT_FOUND", f"sub account {raw} not found")
    return int(raw)


# -- endpoints -------------------------------------------------------------


def info(state: BrokerState, _req: HttpRequest, _args: list[str]) -> Any:
    return {
        "id": 10001,
        "commission_rate": "0.3",
        "status": "enabled",
        "min_taker_rate": "0.001",
        "max_taker_rate": "0.002",
        "min_maker_rate": "0.00005",
        "max_maker_rate": "0.001",
        "futures_min_taker_rate": "0.001",
        "futures_max_taker_rate": "0.002",
        "futures_min_maker_rate": "-0.0005",
        "futures_max_maker_rate": "0",
        "max_sub_accounts": 100000,
        "used_sub_accounts": len(state.accounts),
    }


_RATE_FIELDS: Final = (
    "maker_rate",
    "taker_rate",
    "futures_maker_rate",
    "futures_taker_rate",
    "gt_discount",
    "gt_taker_rate",
    "gt_maker_rate",
    "point_type",
)


def create_sub_account(state: BrokerState, req: HttpRequest, _args: list[str]) -> Any:
    body = _json(req)
    _require(body, "id", "maker_rate", "taker_rate", "futures_maker_rate", "futures_taker_rate")
    account = state.add_account(name=body["id"])
    account.name = str(body.get("name", ""))
    account.rates = {k: body[k] for k in _RATE_FIELDS if k in body}
    return (201, account.as_json())


def list_sub_accounts(state: BrokerState, req: HttpRequest, _args: list[str]) -> Any:
    rows = [a.as_json() for a in state.accounts.values()]
    if state.repeat_first_page:  # a broken Gate: every offset gets the first page
        return rows[: int(_query(req).get("limit", "100"))]
    return _page(rows, req)


def get_sub_account(state: BrokerState, _req: HttpRequest, args: list[str]) -> Any:
    return state.accounts[_account(state, args[0])].as_json()


def update_sub_account(state: BrokerState, req: HttpRequest, args: list[str]) -> Any:
    account = state.accounts[_account(state, args[0])]
    body = _json(req)
    _require(body, "id", "maker_rate", "taker_rate", "futures_maker_rate", "futures_taker_rate")
    account.id = body["id"]
    account.name = str(body.get("name", account.name))
    account.rates.update({k: body[k] for k in _RATE_FIELDS if k in body})
    return account.as_json()


def set_status(status: str) -> Route:
    def route(state: BrokerState, _req: HttpRequest, args: list[str]) -> Any:
        state.accounts[_account(state, args[0])].status = status
        return (204, None)

    return route


def create_key(state: BrokerState, req: HttpRequest, _args: list[str]) -> Any:
    body = _json(req)
    if isinstance(body.get("user_id"), int):  # the SDK types it as int
        body["user_id"] = str(body["user_id"])
    _require(body, "user_id")
    user_id = _account(state, body["user_id"])
    if state.accounts[user_id].refuse_keys:
        raise SimError(400, "INVALID_PARAM_VALUE", "no more API keys for this sub-account")
    perms = body.get("perms", [])
    if not isinstance(perms, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) for p in perms
    ):
        raise SimError(400, "INVALID_PARAM_VALUE", "perms must be a list of {name, read_only}")
    key_type = body.get("type", 1)
    if key_type not in (1, 2, 3):
        raise SimError(400, "INVALID_PARAM_VALUE", f"type must be 1, 2 or 3, got {key_type!r}")
    key = state.create_key(
        user_id, str(body.get("name", "")), perms, list(body.get("ip_whitelist", [])), key_type
    )
    return (201, {**key.as_json(), "secret": key.secret})


def _key(state: BrokerState, args: list[str]) -> Any:
    user_id = _account(state, args[0])
    key = state.keys.get(args[1])
    if key is None or key.user_id != user_id:
        raise SimError(404, "NOT_FOUND", f"API key {args[1]} not found")
    return key


def list_keys(state: BrokerState, _req: HttpRequest, args: list[str]) -> Any:
    return [k.as_json() for k in state.keys_of(_account(state, args[0]))]


def get_key(state: BrokerState, _req: HttpRequest, args: list[str]) -> Any:
    return _key(state, args).as_json()


def update_key(state: BrokerState, req: HttpRequest, args: list[str]) -> Any:
    key = _key(state, args)
    body = _json(req)
    key.name = str(body.get("name", key.name))
    key.perms = list(body.get("perms", key.perms))
    key.ip_whitelist = list(body.get("ip_whitelist", key.ip_whitelist))
    return (204, None)


def delete_key(state: BrokerState, _req: HttpRequest, args: list[str]) -> Any:
    state.delete_key(_key(state, args).key)
    return (204, None)


def create_transfer(state: BrokerState, req: HttpRequest, _args: list[str]) -> Any:
    body = _json(req)
    _require(body, "currency", "sub_account", "direction", "amount")
    _account(state, body["sub_account"])
    if body["direction"] not in ("to", "from"):
        raise SimError(400, "INVALID_PARAM_VALUE", "direction must be 'to' or 'from'")
    order_id = body.get("client_order_id")
    if order_id and any(t["client_order_id"] == order_id for t in state.transfers):
        return (204, None)  # the same order again: Gate does not move the money twice
    state.transfers.append(
        {
            "uid": "10001",
            "timest": str(int(state.now())),
            "source": "api",
            "client_order_id": order_id or "",
            "currency": body["currency"],
            "sub_account": body["sub_account"],
            "direction": body["direction"],
            "amount": body["amount"],
            "sub_account_type": body.get("sub_account_type", "spot"),
        }
    )
    return (204, None)


def list_transfers(state: BrokerState, req: HttpRequest, _args: list[str]) -> Any:
    q = _query(req)
    now = int(state.now())
    start, end = int(q.get("from", now - 7 * 86400)), int(q.get("to", now))
    if end - start > 30 * 86400:
        raise SimError(400, "INVALID_PARAM_VALUE", "record time range cannot exceed 30 days")
    rows = [
        t
        for t in state.transfers
        if start <= int(t["timest"]) <= end
        and ("sub_uid" not in q or t["sub_account"] == q["sub_uid"])
    ]
    return _page(rows, req)


def unified_accounts(state: BrokerState, req: HttpRequest, args: list[str]) -> Any:
    """``GET /unified/accounts`` for the key's own account, at full precision.

    Gate's documents do not show how it answers for an account that is not in
    unified mode; this look-alike refuses with a label that names it, which the
    collector recognises (any non-auth label or message naming "unified").
    """
    account = state.accounts[_account(state, args[0])]
    if not account.unified:
        raise SimError(400, "ACCOUNT_NOT_UNIFIED", "the account is not in unified account mode")
    state.snapshots[account.gate_id] += 1
    wanted = _query(req).get("currency")
    balances = {
        currency: {**account.balance(i), "borrowed": "0", "cross_balance": "0", "im": "0"}
        for i, currency in enumerate(account.currencies)
        if wanted in (None, currency)
    }
    return {
        "user_id": account.gate_id,
        "refresh_time": int(state.now()),
        "locked": False,
        "balances": balances,
        **account.assets(),
        "total": account.assets()["unified_account_total"],
        "borrowed": "0",
        "leverage": "3",
        "spot_hedge": False,
    }


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
            return self.handle(request)

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
            raise SimError(fault.status, fault.label, "injected fault")
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
        reset_ms = int((window.start + self.state.rate_window) * 1000)
        headers = {
            "X-Gate-RateLimit-Limit": str(self.state.rate_limit),
            "X-Gate-RateLimit-Reset-Timestamp": str(reset_ms),
        }
        if window.used >= self.state.rate_limit:
            headers["X-Gate-RateLimit-Requests-Remain"] = "0"
            if self.state.rate_reset_now:  # Gate's "just the current timestamp", in s
                headers["X-Gate-RateLimit-Reset-Timestamp"] = str(int(now))
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
    body = orjson.dumps({"label": err.label, "message": err.message})
    return HttpResponse(err.status, body, headers)
