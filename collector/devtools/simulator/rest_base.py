"""What every REST route of the Gate look-alike shares: Gate's error, the route
signature, and reading bodies, queries, pages and sub-account ids as Gate does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from collector.devtools.simulator.httpserver import HttpRequest
from collector.devtools.simulator.state import BrokerState


class SimError(Exception):
    """An error answer in Gate's format."""

    def __init__(self, status: int, label: str, message: str, text_field: str = "message") -> None:
        super().__init__(message)
        self.status, self.label, self.message = status, label, message
        self.text_field = text_field  # "detail" in some of Gate's answers


Route = Callable[[BrokerState, HttpRequest, list[str]], Any]


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The JSON object in the body (none: ``{}``); Gate's 400 otherwise."""
    try:
        body = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        raise SimError(400, "INVALID_PARAM_VALUE", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise SimError(400, "INVALID_PARAM_VALUE", "request body must be a JSON object")
    return body


def require(body: dict[str, Any], *names: str) -> None:
    """Gate's 400 unless each of ``names`` is a non-empty string in ``body``."""
    for name in names:
        if not isinstance(body.get(name), str) or not body[name]:
            raise SimError(400, "MISSING_REQUIRED_PARAM", f"missing required parameter: {name}")


def query(request: HttpRequest) -> dict[str, str]:
    """The query string as a dict (blank values kept)."""
    return dict(parse_qsl(request.query, keep_blank_values=True))


def page(rows: list[Any], request: HttpRequest) -> list[Any]:
    """``rows`` cut by the request's ``limit`` / ``offset``, checked as Gate does."""
    q = query(request)
    try:
        limit = int(q.get("limit", "100"))
        offset = int(q.get("offset", "0"))
    except ValueError:
        raise SimError(400, "INVALID_PARAM_VALUE", "limit and offset must be integers") from None
    if not 1 <= limit <= 1000 or offset < 0:
        raise SimError(400, "INVALID_PARAM_VALUE", "limit must be 1..1000, offset >= 0")
    return rows[offset : offset + limit]


def account_id(state: BrokerState, raw: str) -> int:
    """A known sub-account's id from a path or body value; Gate's 404 otherwise."""
    if not raw.isdigit() or int(raw) not in state.accounts:
        raise SimError(404, "SUB_ACCOUNT_NOT_FOUND", f"sub account {raw} not found")
    return int(raw)
