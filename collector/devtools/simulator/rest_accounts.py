"""The broker's own routes of the Gate look-alike: ``/broker/info``, sub-accounts
(create, list, read, update, enable, disable) and transfers."""

from __future__ import annotations

from typing import Any, Final

from collector.devtools.simulator.httpserver import HttpRequest
from collector.devtools.simulator.rest_base import (
    Route,
    SimError,
    account_id,
    json_body,
    page,
    query,
    require,
)
from collector.devtools.simulator.state import BrokerState


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
    body = json_body(req)
    require(body, "id", "maker_rate", "taker_rate", "futures_maker_rate", "futures_taker_rate")
    account = state.add_account(name=body["id"])
    account.name = str(body.get("name", ""))
    account.rates = {k: body[k] for k in _RATE_FIELDS if k in body}
    return (201, account.as_json())


def list_sub_accounts(state: BrokerState, req: HttpRequest, _args: list[str]) -> Any:
    rows = [a.as_json() for a in state.accounts.values()]
    if state.repeat_first_page:  # a broken Gate: every offset gets the first page
        return rows[: int(query(req).get("limit", "100"))]
    return page(rows, req)


def get_sub_account(state: BrokerState, _req: HttpRequest, args: list[str]) -> Any:
    return state.accounts[account_id(state, args[0])].as_json()


def update_sub_account(state: BrokerState, req: HttpRequest, args: list[str]) -> Any:
    account = state.accounts[account_id(state, args[0])]
    body = json_body(req)
    require(body, "id", "maker_rate", "taker_rate", "futures_maker_rate", "futures_taker_rate")
    account.id = body["id"]
    account.name = str(body.get("name", account.name))
    account.rates.update({k: body[k] for k in _RATE_FIELDS if k in body})
    return account.as_json()


def set_status(status: str) -> Route:
    def route(state: BrokerState, _req: HttpRequest, args: list[str]) -> Any:
        state.accounts[account_id(state, args[0])].status = status
        return (204, None)

    return route


def create_transfer(state: BrokerState, req: HttpRequest, _args: list[str]) -> Any:
    body = json_body(req)
    require(body, "currency", "sub_account", "direction", "amount")
    account_id(state, body["sub_account"])
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
    q = query(req)
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
    return page(rows, req)
