"""The unified account route of the Gate look-alike: ``GET /unified/accounts``,
read with a sub-account's own key."""

from __future__ import annotations

from typing import Any

import orjson

from collector.devtools.simulator.httpserver import HttpRequest
from collector.devtools.simulator.rest_base import SimError, account_id, query
from collector.devtools.simulator.state import BrokerState


def unified_accounts(state: BrokerState, req: HttpRequest, args: list[str]) -> Any:
    """``GET /unified/accounts`` for the key's own account: every field of Gate's SDK
    ``UnifiedAccount`` (and ``UnifiedBalance`` per currency) at full precision, with
    the zeros of the account's mode.

    Gate's documents do not show how it answers for an account that is not in
    unified mode; this look-alike refuses with a label that names it, which the
    collector recognises (any non-auth label or message naming "unified").
    ``refresh_time`` (which Gate does not define) is the time read, or the time
    of the account's last change (``state.refresh_time``), in seconds.
    """
    account = state.accounts[account_id(state, args[0])]
    key = state.keys.get(req.headers.get("key", ""))
    if key is not None and state.now() < key.active_at:  # Gate has not activated it yet
        raise SimError(401, "INVALID_KEY", "Invalid key provided")
    refusal = state.permission_refusal(key) if key is not None else None
    if refusal is not None:  # Gate: /unified/** needs a key "checking the unified permission"
        raise SimError(403, "FORBIDDEN", orjson.loads(refusal)["message"])
    if not account.is_unified:
        raise SimError(400, "ACCOUNT_NOT_UNIFIED", "the account is not in unified account mode")
    state.snapshots[account.gate_id] += 1
    wanted = query(req).get("currency")
    balances = {
        currency: account.rest_balance(i, currency)
        for i, currency in enumerate(account.currencies)
        if wanted in (None, currency)
    }
    now = state.now()
    refresh = account.changed_wall if state.refresh_time == "last_change" else now
    return {**account.rest_assets(), "refresh_time": int(refresh), "balances": balances}
