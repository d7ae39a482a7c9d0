"""The sub-account key routes of the Gate look-alike: ``/broker/sub_account_keys``
(create, list, read, update, delete)."""

from __future__ import annotations

from typing import Any, Final

from collector.devtools.simulator.httpserver import HttpRequest
from collector.devtools.simulator.rest_base import SimError, account_id, json_body, require
from collector.devtools.simulator.state import BrokerState

# The permission names of the Broker document's create-key body (wallet, spot,
# futures, delivery, withdraw); Gate's key page also has "unified".
BROKER_DOC_PERMS: Final = frozenset({"wallet", "spot", "futures", "delivery", "withdraw"})


def create_key(state: BrokerState, req: HttpRequest, _args: list[str]) -> Any:
    body = json_body(req)
    if isinstance(body.get("user_id"), int):  # the SDK types it as int
        body["user_id"] = str(body["user_id"])
    require(body, "user_id")
    user_id = account_id(state, body["user_id"])
    if state.accounts[user_id].refuse_keys:
        raise SimError(400, "INVALID_PARAM_VALUE", "no more API keys for this sub-account")
    perms = body.get("perms", [])
    if not isinstance(perms, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) for p in perms
    ):
        raise SimError(400, "INVALID_PARAM_VALUE", "perms must be a list of {name, read_only}")
    if state.broker_doc_perms:
        unknown = [p["name"] for p in perms if p["name"] not in BROKER_DOC_PERMS]
        if unknown:  # the first one, as a validator that stops at it would
            raise SimError(400, "INVALID_PARAM_VALUE", f"invalid perms name: {unknown[0]}")
    key_type = body.get("type", 1)
    if key_type not in (1, 2, 3):
        raise SimError(400, "INVALID_PARAM_VALUE", f"type must be 1, 2 or 3, got {key_type!r}")
    key = state.create_key(
        user_id, str(body.get("name", "")), perms, list(body.get("ip_whitelist", [])), key_type
    )
    return (201, {**key.as_json(), "secret": key.secret})


def _key(state: BrokerState, args: list[str]) -> Any:
    user_id = account_id(state, args[0])
    key = state.keys.get(args[1])
    if key is None or key.user_id != user_id:
        raise SimError(404, "NOT_FOUND", f"API key {args[1]} not found")
    return key


def list_keys(state: BrokerState, _req: HttpRequest, args: list[str]) -> Any:
    return [k.as_json() for k in state.keys_of(account_id(state, args[0]))]


def get_key(state: BrokerState, _req: HttpRequest, args: list[str]) -> Any:
    return _key(state, args).as_json()


def update_key(state: BrokerState, req: HttpRequest, args: list[str]) -> Any:
    key = _key(state, args)
    body = json_body(req)
    key.name = str(body.get("name", key.name))
    key.perms = list(body.get("perms", key.perms))
    key.ip_whitelist = list(body.get("ip_whitelist", key.ip_whitelist))
    return (204, None)


def delete_key(state: BrokerState, _req: HttpRequest, args: list[str]) -> Any:
    state.delete_key(_key(state, args).key)
    return (204, None)
