"""What each account's truth looks like right now, as small plain values (pure).

:meth:`collector.supervisor.supervisor.Supervisor.account_states` returns one
:class:`AccountState` per account this instance serves; an HTTP ``/status``, the
dashboards' self-metrics and ``collector_stats`` read these, nothing else.

``state`` is one word, the first that applies:

* ``keyless`` — no usable key could be created or stored; no session runs;
* ``over_capacity`` — no room for a session (Gate's connections per IP);
* ``not_unified`` — Gate says the account is not in unified mode (REST snapshot);
* ``forbidden`` — the key lacks a permission (a subscribe or a snapshot said so);
* ``refused`` — Gate refused a subscription (codes 1-3, or no ack); retried;
* ``active`` — both channels subscribed: pushes arrive, snapshots keep it true;
* ``connecting`` — anything else (connecting, subscribe sent, reconnecting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from collector.gate.subscription import ChannelState

KEYLESS: Final = "keyless"
OVER_CAPACITY: Final = "over_capacity"
NOT_UNIFIED: Final = "not_unified"
FORBIDDEN: Final = "forbidden"
REFUSED: Final = "refused"
ACTIVE: Final = "active"
CONNECTING: Final = "connecting"
STATES: Final = (ACTIVE, CONNECTING, REFUSED, FORBIDDEN, NOT_UNIFIED, KEYLESS, OVER_CAPACITY)


@dataclass(frozen=True, slots=True)
class AccountState:
    """One account as an operator sees it."""

    account: int  # Gate user id
    label: str
    state: str  # one of STATES
    reason: str = ""  # why, when the state is not active
    connected: bool = False  # socket up and both channels active
    snapshots: int = 0  # REST snapshots taken
    snapshot_failures: int = 0
    last_data_age: float | None = None  # seconds since the last push (None: none yet)
    last_snapshot_age: float | None = None  # seconds since the last good snapshot


def decide(
    *,
    keyless: bool = False,
    over_capacity: bool = False,
    snapshot_state: str = "",
    snapshot_reason: str = "",
    subscription: str = ChannelState.IDLE.value,
    subscription_reason: str = "",
) -> tuple[str, str]:
    """(state, reason) from what the supervisor, the snapshots and the session know."""
    if keyless:
        return KEYLESS, "no key could be created or stored for this account"
    if over_capacity:
        return OVER_CAPACITY, "no connection left under gate.max_connections_per_ip"
    if snapshot_state == NOT_UNIFIED:
        return NOT_UNIFIED, snapshot_reason
    if subscription == ChannelState.FORBIDDEN.value:
        return FORBIDDEN, subscription_reason
    if snapshot_state == FORBIDDEN:
        return FORBIDDEN, snapshot_reason
    if subscription == ChannelState.REFUSED.value:
        return REFUSED, subscription_reason
    if subscription == ChannelState.ACTIVE.value:
        return ACTIVE, ""
    return CONNECTING, subscription_reason
