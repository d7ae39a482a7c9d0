"""What the Gate look-alike remembers: sub-accounts, their keys, transfers, faults.

Plain data, no I/O; the REST and WebSocket front ends read and change it, and
tests reach in to revoke a key, disable an account or inject a fault.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from collector.gate.signing import ApiCredentials


def _rate(balance: float, margin: float) -> str:
    """balance / margin as Gate's REST writes a rate (a plain ratio, full precision).

    With no margin in use Gate's REST rate is not documented: this look-alike
    sends "0" (the hard case: the collector must not read it as liquidation).
    """
    return "0" if margin == 0 else f"{balance / margin:.10f}"


@dataclass
class WsFault:
    """A fault for the next push to one account's WebSocket session.

    kind: ``gap`` (skip ``count`` u values on ``channel``), ``drop`` (close the
    connection), ``reset`` (half a frame, then a TCP reset), ``silence`` (send
    nothing for ``seconds``), ``malformed`` (a frame that is not JSON), ``error``
    (an error frame), ``upgrade`` (ask to reconnect with a top-level
    ``event: "upgrade"``), ``system_upgrade`` (the same with Gate's
    documented ``<x>.system`` / ``update`` / ``{"type": "upgrade"}`` shape).
    """

    kind: str
    channel: str = "unified.asset_detail"
    count: int = 1
    seconds: float = 0.0


# Gate's account modes (``UnifiedAccount.mode``); classic is not unified.
MULTI_CURRENCY: Final = "multi_currency"
PORTFOLIO: Final = "portfolio"
SINGLE_CURRENCY: Final = "single_currency"
CLASSIC: Final = "classic"
_CROSS: Final = frozenset({MULTI_CURRENCY, PORTFOLIO})


def _text(value: float, places: int = 8) -> str:
    return f"{value:.{places}f}"


@dataclass(frozen=True)
class HandshakeFault:
    """The next WebSocket handshake is refused with ``status`` (as a proxy or Gate's
    per-IP limit may), with ``body`` and a ``Retry-After`` when given."""

    status: int
    body: bytes | None = None
    retry_after: int | None = None


@dataclass
class SimSubAccount:
    """A sub-account as Gate stores it, and how its WebSocket pushes behave.

    Its numbers are consistent, as Gate's are: a maintenance margin rate is the
    margin balance over the maintenance margin, a plain ratio (``margin_ratio``),
    and every field that does not apply in the account's ``mode`` is 0, as the
    field descriptions of Gate's SDK say (``UnifiedAccount`` / ``UnifiedBalance``):
    the account-level margin figures apply in multi-currency and portfolio mode,
    USDT's ``im mm imr mmr margin_balance available_margin`` in single-currency mode.
    """

    gate_id: int
    id: str
    name: str
    status: str = "enabled"
    rates: dict[str, Any] = field(default_factory=dict)
    # "identity" (Gate's docs): u is the account's user id; "counter": u counts up
    # per channel (the seed's examples; tests of sequence gaps).
    u_mode: str = "identity"
    currencies: list[str] = field(default_factory=lambda: ["BTC", "ETH", "USDT"])
    ws_faults: deque[WsFault] = field(default_factory=deque)
    # The account's data: ``version`` counts its changes; values derive from it.
    version: int = 0
    changed_at: float | None = None  # trio time of the last change
    # Gate's clock time of the last change (or of the account's creation).
    changed_wall: float = field(default_factory=time.time)
    # Seconds between changes; None: the simulator's ``change_interval``; 0: never.
    change_interval: float | None = None
    unified: bool = True  # False: /unified/accounts refuses, as for a classic account
    refuse_keys: bool = False  # True: Gate refuses to create a key for this account
    # channel -> Gate error code with which its subscribes are refused: 1, 2 or 3
    # (``result.status: "fail"``), or 4 with a FORBIDDEN label (no permission).
    refuse: dict[str, int] = field(default_factory=dict)
    # channel -> the text of its refusal, instead of the code's usual one.
    refuse_text: dict[str, str] = field(default_factory=dict)
    # Gate's account mode: multi_currency, portfolio, single_currency, classic.
    mode: str = MULTI_CURRENCY
    # The maintenance margin rate that matters (account-level in multi-currency and
    # portfolio mode, USDT's in single-currency mode), a ratio; None: 20..108, moving
    # a little with each change. no_margin: no margin in use (every margin 0).
    margin_ratio: float | None = None
    no_margin: bool = False

    def change(self, now: float, wall: float | None = None) -> None:
        """The account's balances move (a trade, a transfer): pushes follow."""
        self.version += 1
        self.changed_at = now
        self.changed_wall = time.time() if wall is None else wall

    @property
    def is_unified(self) -> bool:
        """Whether /unified/accounts answers for the account."""
        return self.unified and self.mode != CLASSIC

    @property
    def cross(self) -> bool:
        """Multi-currency or portfolio margin mode: the account-level figures apply."""
        return self.mode in _CROSS

    def ratio(self) -> float | None:
        """The true maintenance margin ratio; None with no margin in use."""
        if self.no_margin:
            return None
        if self.margin_ratio is not None:
            return self.margin_ratio
        return 20 + self.gate_id % 89 + (self.version % 5) * 0.01 + 0.001234

    def _money(self) -> tuple[float, float]:
        """(equity, liabilities) of the account."""
        n, scale = self.version, 1 + (self.gate_id % 97) / 10
        return 617985.29 * scale + n + 0.00271828, 12939.74 * scale + n + 0.00141421

    def _margins(self, balance: float) -> tuple[float, float]:
        """(maintenance, initial) margin of ``balance``: balance / margin = the ratio."""
        ratio = self.ratio()
        if ratio is None:
            return 0.0, 0.0
        return balance / ratio, 2 * balance / ratio

    def assets(self) -> dict[str, str]:
        """The totals the WebSocket also pushes, at full precision, under the REST names."""
        equity, liab = self._money()
        mm, im = self._margins(equity)
        zero = "0"
        cross = self.cross
        return {
            "total_initial_margin_rate": _rate(equity, im) if cross else zero,
            "total_maintenance_margin_rate": _rate(equity, mm) if cross else zero,
            "total_margin_balance": _text(equity) if cross else zero,
            "unified_account_total_equity": _text(equity),
            "unified_account_total_liab": _text(liab) if cross else zero,
            "unified_account_total": _text(equity + liab),
            "total_available_margin": _text(equity - im) if cross else zero,
        }

    def rest_assets(self) -> dict[str, Any]:
        """Every account-level field of Gate's SDK ``UnifiedAccount`` but the balances."""
        equity, liab = self._money()
        mm, im = self._margins(equity)
        cross = self.cross
        return {
            "mode": self.mode,
            "user_id": self.gate_id,
            "locked": False,
            **self.assets(),
            "total": _text(equity + liab),
            "borrowed": _text(liab) if cross else "0",
            "total_initial_margin": _text(im) if cross else "0",
            "total_maintenance_margin": _text(mm) if cross else "0",
            "leverage": "3" if cross else "0",
            "spot_order_loss": "0",
            "options_order_loss": "0",
            "spot_hedge": False,
            "use_funding": False,
            "is_all_collateral": True,
        }

    def balance(self, index: int) -> dict[str, str]:
        """One currency's balance at full precision, under the REST names."""
        n = self.version
        base = 1000.0 * (index + 1) + n * 0.5 + 0.12345678
        return {
            "available": f"{base:.8f}",
            "freeze": f"{n % 3:.8f}",
            "equity": f"{base + n % 3:.8f}",
            "total_liab": "0",
        }

    def margin_figures(self, currency: str) -> dict[str, str]:
        """USDT's single-currency margin figures (0 for any other currency or mode)."""
        figures = dict.fromkeys(
            ("im", "mm", "imr", "mmr", "margin_balance", "available_margin"), "0"
        )
        if self.mode == SINGLE_CURRENCY and currency == "USDT":
            balance = float(self.balance(self.currencies.index(currency))["equity"])
            mm, im = self._margins(balance)
            figures.update(
                im=_text(im),
                mm=_text(mm),
                imr=_rate(balance, im),
                mmr=_rate(balance, mm),
                margin_balance=_text(balance),
                available_margin=_text(balance - im),
            )
        return figures

    def rest_balance(self, index: int, currency: str) -> dict[str, Any]:
        """Every field of Gate's SDK ``UnifiedBalance`` for one currency."""
        core = self.balance(index)
        return {
            **core,
            "borrowed": "0",
            "negative_liab": "0",
            "futures_pos_liab": "0",
            "total_freeze": core["freeze"],
            "spot_in_use": "0",
            "funding": "0",
            "funding_version": str(self.version),
            "cross_balance": "0" if self.mode == PORTFOLIO else core["available"],
            "iso_balance": "0",
            **self.margin_figures(currency),
            "enabled_collateral": True,
            "balance_version": float(self.version),
        }

    def as_json(self) -> dict[str, Any]:
        """The Broker API's ``BrokerSubAccount`` shape."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "maker_rate": "0.002",
            "taker_rate": "0.002",
            "futures_maker_rate": "-0.0001",
            "futures_taker_rate": "0.002",
            "gt_discount": False,
            "gt_taker_rate": "0",
            "gt_maker_rate": "0",
            "point_type": 1,
        }
        body.update(self.rates)
        body.update({"status": self.status, "gate_id": self.gate_id})
        return body


@dataclass
class SimKey:
    """A sub-account API key; ``secret`` is shown only when created."""

    user_id: int
    key: str
    secret: str = field(repr=False)
    name: str
    perms: list[dict[str, Any]]
    ip_whitelist: list[str]
    created_at: int
    # Gate's clock time from which the key is accepted ("up to 5 minutes").
    active_at: float = 0.0
    type: int = 1
    last_access: int = 0

    def as_json(self) -> dict[str, Any]:
        """The key without its secret, typed as Gate's SDK types it (ints, not strings)."""
        return {
            "user_id": self.user_id,
            "name": self.name,
            "type": self.type,
            "mode": 1,
            "perms": self.perms,
            "key": self.key,
            "ip_whitelist": self.ip_whitelist,
            "state": 1,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "last_access": self.last_access,
        }


@dataclass
class Fault:
    """An injected failure for requests whose path starts with ``path_prefix``."""

    path_prefix: str
    count: int
    status: int = 503
    label: str = "TOO_BUSY"
    # True: do the work, then drop the connection without an answer.
    drop_response: bool = False
    # Only requests of this method ("": any).
    method: str = ""
    # The body's text under "message" (Gate's usual) or "detail" (seen too).
    text_field: str = "message"


@dataclass
class BrokerState:
    """The whole simulated broker."""

    broker: ApiCredentials
    clock: Callable[[], float] = time.time
    accounts: dict[int, SimSubAccount] = field(default_factory=dict)
    keys: dict[str, SimKey] = field(default_factory=dict)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    rate_limit: int = 80
    rate_window: float = 10.0
    # Added to the clock: a positive value is a Gate whose clock runs ahead of ours.
    skew: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    # Fault: /broker/sub_accounts answers the first page whatever the offset.
    repeat_first_page: bool = False
    next_gate_id: int = 100_001
    # WebSocket side: pushers look for changes every ``push_interval`` and push only
    # when the account changed since their last push (Gate pushes only on change).
    push_interval: float = 1.0
    # Seconds between changes of every account (0: accounts never change: quiet).
    change_interval: float = 0.0
    # REST snapshots served per account (GET /unified/accounts).
    snapshots: Counter[int] = field(default_factory=Counter)
    sequence: dict[tuple[int, str], int] = field(default_factory=dict)
    pushed: Counter[tuple[int, str]] = field(default_factory=Counter)
    last_pushed: dict[tuple[int, str, str], dict[str, Any]] = field(default_factory=dict)
    # Tests: every push as (account, channel, the frame's time_ms, its values by currency).
    push_log: list[tuple[int, str, int, dict[str, dict[str, str]]]] | None = None
    # False: frames carry only ``time`` and ``t`` in seconds, as the seed's assets
    # example (a push is then stamped at a whole second).
    push_time_ms: bool = True
    skipped: Counter[tuple[int, str]] = field(default_factory=Counter)
    ws_connections: int = 0
    # Subscriptions being pushed to, per account (0, 1 or 2 channels).
    active: Counter[int] = field(default_factory=Counter)
    # True: accounts stop changing; a change already made is still pushed on every
    # channel (lets a test stop the flow before it checks).
    paused: bool = False
    # Benchmarks: > 0 sends that many asset_detail updates per subscription as fast
    # as the connection takes them (pre-encoded frames), then nothing more.
    burst: int = 0
    burst_started: float | None = None
    # time.monotonic() of the first burst frame: comparable across processes.
    burst_started_monotonic: float | None = None
    burst_finished: float | None = None
    burst_sent: int = 0
    ws_events: Counter[str] = field(default_factory=Counter)
    # Refusals for the next handshakes, whoever makes them (one each, in order).
    handshake_faults: deque[HandshakeFault] = field(default_factory=deque)
    # time_ms of the last update pushed per (account, channel).
    last_push_ms: dict[tuple[int, str], int] = field(default_factory=dict)
    # Keys: a new key is refused for this long; keys without an IP binding expire
    # after key_lifetime (Gate: 90 days); a key lacking a permission named here is
    # refused on the WebSocket and on /unified/accounts (Gate: "unified").
    key_activation_delay: float = 0.0
    # Seconds the answer to a key creation takes, the key already made: the window in
    # which a killed collector leaves a key on Gate that it never stored.
    key_create_delay: float = 0.0
    key_lifetime: float | None = None
    required_perms: frozenset[str] = frozenset()
    # Deletions per key id, and those of a key a subscription was using right then.
    deleted: Counter[str] = field(default_factory=Counter)
    deleted_in_use: Counter[str] = field(default_factory=Counter)
    keys_in_use: Counter[str] = field(default_factory=Counter)
    # How a refused WebSocket auth looks: "code4" (code 4, a JSON label) or "ws_auth"
    # (code 2, the label inside Gate's ws_auth text: gateio/WebSocket-API#13).
    ws_auth_shape: str = "code4"
    # True: creating a key refuses permission names the Broker document does not list.
    broker_doc_perms: bool = False
    # Gate's per-IP connection cap (None: none): a handshake over it is refused with
    # 429; the most connections one IP held at once, and the handshakes refused.
    max_connections_per_ip: int | None = None
    ws_per_ip: Counter[str] = field(default_factory=Counter)
    ws_peak_per_ip: Counter[str] = field(default_factory=Counter)
    ws_refused_over_cap: int = 0
    # 429 answers carry a reset of "now" (Gate's value outside a limit), not the window's end.
    rate_reset_now: bool = False
    # The unit of the WebSocket's margin rates: "ratio" (as REST: the seed's "refer to
    # the http interface") or "percent" (Gate's newer document: "(unit: %)").
    ws_rate_unit: str = "ratio"
    # What /unified/accounts puts in refresh_time (undefined by Gate): "now" (when it
    # is read) or "last_change" (when the account last changed: hours ago when quiet).
    refresh_time: str = "now"

    def now(self) -> float:
        """Gate's idea of the current time."""
        return self.clock() + self.skew

    def add_account(self, name: str | None = None, enabled: bool = True) -> SimSubAccount:
        """Create a sub-account with the next Gate user id."""
        gate_id = self.next_gate_id
        self.next_gate_id += 1
        account = SimSubAccount(
            gate_id=gate_id,
            id=name or f"sub-{gate_id}",
            name=name or f"sub-{gate_id}",
            status="enabled" if enabled else "disabled",
            changed_wall=self.now(),
        )
        self.accounts[gate_id] = account
        return account

    def seed(self, count: int, disabled_every: int = 0) -> list[SimSubAccount]:
        """``count`` sub-accounts; every ``disabled_every``-th one disabled (0: none)."""
        return [
            self.add_account(enabled=not (disabled_every and (i + 1) % disabled_every == 0))
            for i in range(count)
        ]

    def create_key(
        self,
        user_id: int,
        name: str,
        perms: list[dict[str, Any]],
        ip_whitelist: list[str],
        key_type: int = 1,
    ) -> SimKey:
        """A new key for ``user_id`` (the caller checked the account exists)."""
        now = self.now()
        key = SimKey(
            user_id=user_id,
            key=secrets.token_hex(16),
            secret=secrets.token_hex(32),
            name=name,
            perms=perms,
            ip_whitelist=ip_whitelist,
            created_at=int(now),
            active_at=now + self.key_activation_delay,
            type=key_type,
        )
        self.keys[key.key] = key
        self.calls["keys_created"] += 1
        return key

    def keys_of(self, user_id: int) -> list[SimKey]:
        """The keys of one sub-account, oldest first."""
        return [k for k in self.keys.values() if k.user_id == user_id]

    def revoke(self, key: str) -> None:
        """Delete a key behind the collector's back (as an operator would on Gate's site)."""
        self.keys.pop(key, None)

    def delete_key(self, key: str) -> None:
        """Delete a key through the API, counting it (and whether a session was using it)."""
        self.keys.pop(key, None)
        self.deleted[key] += 1
        if self.keys_in_use[key] > 0:
            self.deleted_in_use[key] += 1

    def key_refusal(self, key: SimKey, peer: str | None) -> str | None:
        """Why Gate would refuse ``key`` used from ``peer`` now (an auth error text), or None."""
        now = self.now()
        if now < key.active_at:
            return '{"label":"INVALID_KEY","message":"Invalid key provided"}'
        if (
            self.key_lifetime is not None
            and not key.ip_whitelist
            and now >= key.created_at + self.key_lifetime
        ):
            return '{"label":"INVALID_KEY","message":"API key expired"}'
        if key.ip_whitelist and peer not in key.ip_whitelist:
            return f'{{"label":"FORBIDDEN","message":"Request IP not in whitelist: {peer}"}}'
        return self.permission_refusal(key)

    def permission_refusal(self, key: SimKey) -> str | None:
        """Gate's FORBIDDEN text when ``key`` lacks one of ``required_perms``, else None."""
        granted = {str(p.get("name")) for p in key.perms}
        missing = sorted(self.required_perms - granted)
        if missing:
            return f'{{"label":"FORBIDDEN","message":"API key lacks the permission {missing[0]}"}}'
        return None

    def take_fault(self, path: str, method: str = "") -> Fault | None:
        """The first armed fault matching ``path`` (and method), consuming one of its uses."""
        for fault in self.faults:
            if fault.method and method and fault.method != method:
                continue
            if fault.count > 0 and path.startswith(fault.path_prefix):
                fault.count -= 1
                return fault
        return None
