"""The data contract with InfluxDB and Grafana (DESIGN.md section 4): every name, once.

Normalisation, the collector's own statistics and the dashboard generator import
these constants; no measurement, tag or field name is spelled anywhere else.
Pushes and REST snapshots write the same measurements under the same long
names, so ``last()`` is the truth whichever way a value arrived.
"""

from __future__ import annotations

from typing import Final

from collector.gate.sequence import REASON_RECONNECT, REASON_SEQUENCE

# -- measurements -------------------------------------------------------------

ASSETS: Final = "gate_unified_assets"
ASSET_DETAIL: Final = "gate_unified_asset_detail"
SEQUENCE_GAP: Final = "gate_sequence_gap"
COLLECTOR_STATS: Final = "collector_stats"
# Written by each shard every stats interval from the last known state of its
# accounts, so dashboards get exact totals over any range, however quiet accounts are.
BROKER_TOTALS: Final = "gate_broker_totals"
CURRENCY_TOTALS: Final = "gate_currency_totals"
ACCOUNT_STATE: Final = "gate_account_state"

# -- tags -----------------------------------------------------------------------

TAG_ACCOUNT: Final = "account"
TAG_ACCOUNT_LABEL: Final = "account_label"
TAG_CURRENCY: Final = "currency"
TAG_CHANNEL: Final = "channel"
TAG_REASON: Final = "reason"
TAG_INSTANCE: Final = "instance"
TAG_SHARD: Final = "shard"

# -- fields shared by both account measurements ----------------------------------

FIELD_U: Final = "u"
FIELD_REFRESH_TIME: Final = "refresh_time"

# -- gate_unified_assets: WebSocket short key -> long name (the REST name too) -----

EQUITY: Final = "unified_account_total_equity"
LIABILITIES: Final = "unified_account_total_liab"
TOTAL: Final = "unified_account_total"
AVAILABLE_MARGIN: Final = "total_available_margin"
MARGIN_BALANCE: Final = "total_margin_balance"
INITIAL_MARGIN_RATE: Final = "total_initial_margin_rate"
MAINTENANCE_MARGIN_RATE: Final = "total_maintenance_margin_rate"

ASSETS_FIELDS: Final = {
    "r": INITIAL_MARGIN_RATE,
    "R": MAINTENANCE_MARGIN_RATE,
    "b": MARGIN_BALANCE,
    "e": EQUITY,
    "l": LIABILITIES,
    "T": TOTAL,
    "a": AVAILABLE_MARGIN,
}
# Keys of a push that are not numbers to write: identity/sequence/time, deprecated `c`.
ASSETS_SKIP: Final = frozenset({"u", "t", "c"})

# Every stored rate is a ratio (margin balance / margin), 1.0 = 100 %: Gate's help puts
# liquidation at "100% or below"; REST rates are plain ratios (Gate's example
# 16499.1356783634: not capped). WebSocket rates may come in percent
# (gate.ws_rate_unit): they are divided by 100 before they are written.
# Gate's margin rate when no margin is in use: the safest value, not the riskiest.
# Stored as exactly this in either unit (never scaled), and for a rate whose margin
# is 0 (no margin in use) whatever Gate put in it: dashboards match the value.
NO_MARGIN_RATE: Final = 9999.99
NO_MARGIN_TEXT: Final = "9999.99"
# Gate: at or below 100 % maintenance margin rate liquidation starts; ~110 % forced repayment.
LIQUIDATION_RATE: Final = 1.0
FORCED_REPAYMENT_RATE: Final = 1.1
# The default "margin getting thin" alert level (a setting of the alert rules).
MARGIN_ALERT_RATE: Final = 1.5

# -- gate_unified_asset_detail: WebSocket short key -> long name ---------------------

DETAIL_AVAILABLE: Final = "available"
DETAIL_FREEZE: Final = "freeze"
DETAIL_EQUITY: Final = "equity"
DETAIL_LIABILITIES: Final = "total_liab"
DETAIL_BALANCE: Final = "balance"
DETAIL_INITIAL_MARGIN_RATE: Final = "initial_margin_rate"
DETAIL_MAINTENANCE_MARGIN_RATE: Final = "maintenance_margin_rate"

DETAIL_FIELDS: Final = {
    "a": DETAIL_AVAILABLE,
    "f": DETAIL_FREEZE,
    "e": DETAIL_EQUITY,
    "tl": DETAIL_LIABILITIES,
    "b": DETAIL_BALANCE,
    "cb": "cross_balance",
    "mb": "margin_balance",
    "im": "initial_margin",
    "mm": "maintenance_margin",
    "imr": DETAIL_INITIAL_MARGIN_RATE,
    "mmr": DETAIL_MAINTENANCE_MARGIN_RATE,
    "am": "available_margin",
    "iam": "iso_available_margin",
}

# -- REST snapshot (GET /unified/accounts): names with no WebSocket twin ------------
# Written under their own names; known here so a non-number in them is counted.
# (Gate's SDK types every number of UnifiedAccount / UnifiedBalance as a string.)

SNAPSHOT_ASSETS_FIELDS: Final = frozenset(
    {
        "total",
        "borrowed",
        "total_initial_margin",
        "total_maintenance_margin",
        "leverage",
        "spot_order_loss",
    }
)
SNAPSHOT_DETAIL_FIELDS: Final = frozenset(
    {
        "available",
        "freeze",
        "equity",
        "total_liab",
        "cross_balance",
        "margin_balance",
        "available_margin",
        "borrowed",
        "negative_liab",
        "futures_pos_liab",
        "total_freeze",
        "spot_in_use",
        "funding",
        "iso_balance",
    }
)
# Counters, not amounts (UnifiedBalance.funding_version "Funding version",
# balance_version "Balance version number"): not written. As ints they would clash
# with the float type databases already hold for them (written as balances before),
# and no panel or alert has a use for them.
SNAPSHOT_NOT_WRITTEN: Final = frozenset({"funding_version", "balance_version"})

# -- gate_sequence_gap ------------------------------------------------------------

GAP_EXPECTED: Final = "expected"
GAP_RECEIVED: Final = "received"
GAP_MISSED: Final = "missed"
# the gap reasons (tag values) are the sequence tracker's: REASON_SEQUENCE, REASON_RECONNECT
__all__ = ["REASON_RECONNECT", "REASON_SEQUENCE"]

# -- collector_stats: fields an operator's dashboards and alerts read --------------------

STAT_SESSIONS_TOTAL: Final = "sessions_total"
STAT_SESSIONS_CONNECTED: Final = "sessions_connected"
STAT_SESSIONS_OVER_CAPACITY: Final = "sessions_over_capacity"
STAT_FRAMES_RECEIVED: Final = "frames_received"
STAT_UPDATES_RECEIVED: Final = "updates_received"
STAT_FRAMES_INVALID: Final = "frames_invalid"
STAT_FRAMES_REJECTED: Final = "frames_rejected"
STAT_POINTS_OVER_CURRENCY_CAP: Final = "points_over_currency_cap"
STAT_FIELDS_INVALID: Final = "fields_invalid"
STAT_GATE_ERRORS: Final = "gate_errors"
STAT_GATE_UP: Final = "gate_up"  # 1: Gate's broker API answered the last discovery
STAT_DISCOVERY_ERRORS: Final = "discovery_errors"
STAT_RECONNECTS: Final = "reconnects"
STAT_GAPS: Final = "gaps"
# Code 1/2 subscribe refusals without a label (retried; loud when they repeat).
STAT_REFUSALS_UNEXPLAINED: Final = "subscribe_refusals_unexplained"
STAT_HANDSHAKE_REFUSALS: Final = "handshake_refusals"
STAT_HANDSHAKE_REFUSALS_AUTH: Final = "handshake_refusals_auth"  # of them, 401/403
# Failures a slot or a snapshot contained (logged, retried); per cause as
# ``session_crashes_<ExceptionType>`` beside the total.
STAT_SESSION_CRASHES: Final = "session_crashes"
STAT_SNAPSHOT_CRASHES: Final = "snapshot_crashes"
STAT_KEY_REPLACEMENTS: Final = "key_replacements"
STAT_KEY_STORE_WRITE_ERRORS: Final = "key_store_write_errors"
STAT_KEY_ROTATIONS: Final = "key_rotations"
STAT_KEY_ROTATIONS_BREAK_BEFORE_MAKE: Final = "key_rotations_break_before_make"
STAT_KEY_ERRORS: Final = "key_errors"
STAT_KEY_CONFIG_REFUSALS: Final = "key_config_refusals"
STAT_POINTS_WRITTEN: Final = "points_written"
STAT_POINTS_DROPPED: Final = "points_dropped"
STAT_POINTS_REJECTED: Final = "points_rejected"
STAT_WRITE_ERRORS: Final = "write_errors"
STAT_WRITE_TIME_MS: Final = "write_time_ms"
STAT_BUFFER_SIZE: Final = "buffer_size"
STAT_SPOOL_BYTES: Final = "spool_bytes"
STAT_SNAPSHOTS: Final = "snapshots"
STAT_SNAPSHOT_FAILURES: Final = "snapshot_failures"
STAT_SNAPSHOT_FIELDS_INVALID: Final = "snapshot_fields_invalid"
STAT_ACCOUNTS_ACTIVE: Final = "accounts_active"
STAT_ACCOUNTS_REFUSED: Final = "accounts_refused"
STAT_ACCOUNTS_FORBIDDEN: Final = "accounts_forbidden"
STAT_ACCOUNTS_NOT_UNIFIED: Final = "accounts_not_unified"
STAT_ACCOUNTS_KEYLESS: Final = "accounts_keyless"
# Values Gate sent as 0 that do not apply in the account's mode (not written), and
# zeros not written because the account's mode was not known yet.
STAT_VALUES_NOT_APPLICABLE: Final = "values_not_applicable"
STAT_VALUES_MODE_UNKNOWN: Final = "values_mode_unknown"
# WebSocket rates not written because gate.ws_rate_unit = "auto" has not decided yet.
STAT_WS_RATES_WITHHELD: Final = "ws_rates_withheld"
# What WebSocket rates are divided by: 1 (ratio), 100 (percent), 0 (not decided yet).
STAT_WS_RATE_DIVISOR: Final = "ws_rate_divisor"

# -- gate_broker_totals / gate_currency_totals (tags instance, shard[, currency]) -------
# Totals reuse the account fields' own names (EQUITY, LIABILITIES, ... and the
# DETAIL_* names); these count what went into them.

TOTALS_ACCOUNTS: Final = "accounts"
BROKER_TOTAL_FIELDS: Final = (EQUITY, LIABILITIES, TOTAL, AVAILABLE_MARGIN, MARGIN_BALANCE)
CURRENCY_TOTAL_FIELDS: Final = (
    DETAIL_EQUITY,
    DETAIL_LIABILITIES,
    DETAIL_AVAILABLE,
    DETAIL_FREEZE,
    DETAIL_BALANCE,
)

# -- gate_account_state (tags account, account_label, instance, shard) ---------------
# One point per account of the shard each stats interval: its session state and the
# last known values of ACCOUNT_STATE_VALUES, so "stale" and "broken" differ and risk
# tables see quiet accounts.

STATE_CONNECTED: Final = "connected"
STATE_SESSION: Final = "session_state"
STATE_SECONDS_SINCE_UPDATE: Final = "seconds_since_update"
STATE_SECONDS_SINCE_FRAME: Final = "seconds_since_frame"
# The account's mode (a string field: "multi_currency", "portfolio", "single_currency",
# "classic"), from its REST snapshots; absent until one said it.
STATE_MODE: Final = "mode"
# The maintenance margin rate that matters for the account, whatever its mode (the
# account-level rate in multi-currency/portfolio mode, USDT's in single-currency
# mode): what the ranking, the "lowest rate" stat and the margin alert read. The
# initial margin rate the same way. Ratios (1.0 = 100 %); absent when unknown.
EFFECTIVE_MAINTENANCE_MARGIN_RATE: Final = "effective_maintenance_margin_rate"
EFFECTIVE_INITIAL_MARGIN_RATE: Final = "effective_initial_margin_rate"
ACCOUNT_STATE_VALUES: Final = (
    MAINTENANCE_MARGIN_RATE,
    INITIAL_MARGIN_RATE,
    EQUITY,
    LIABILITIES,
    TOTAL,
    AVAILABLE_MARGIN,
)
# session_state codes (an int field: alert rules compare numbers)
SESSION_CONNECTED: Final = 0
SESSION_DISCONNECTED: Final = 1  # a session runs but Gate's stream is not up
SESSION_OVER_CAPACITY: Final = 2  # no session: beyond gate.max_connections_per_ip
SESSION_STATE_TEXT: Final = {
    SESSION_CONNECTED: "connected",
    SESSION_DISCONNECTED: "disconnected",
    SESSION_OVER_CAPACITY: "over capacity",
}
