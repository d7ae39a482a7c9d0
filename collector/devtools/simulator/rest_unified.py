"""The unified account route of the Gate look-alike: ``GET /unified/accounts``,
read with a sub-account's own key."""

from __future__ import annotations

from typing import Any

import orjson

from collector.devtools.simulator.httpserver import HttpRequest
from collector.devtools.simulator.rest_base import SimError, account_id, query
from collector.devtools.simulator.state import BrokerState


def unified_accounts(state: BrokerState, req: HttpRequest, args: list[str]) -> Any:
    """``GET /unified/accounts`` for the key's own account, at full precision.

    Gate's documents do not show how it answers for an account that is not in
    unified mode; this look-alike refuses with a label that names it, which the
    collector recognises (any non-auth label or message naming "unified").
    """
    account = state.accounts[account_id(state, args[0])]
    key = state.keys.get(req.headers.get("key", ""))
    if key is not None and state.now() < key.active_at:  # Gate has not activated it yet
        raise SimError(401, "INVALID_KEY", "Invalid key provided")
    refusal = state.permission_refusal(key) if key is not None else None
    if refusal is not None:  # Gate: /unified/** needs a key "checking the unified permission"
        raise SimError(403, "FORBIDDEN", orjson.loads(refusal)["message"])
    if not account.unified:
        raise SimError(400, "ACCOUNT_NOT_UNIFIED", "the account is not in unified account mode")
    state.snapshots[account.gate_id] += 1
    wanted = query(req).get("currency")
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
