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

# Gate's margin rate when no margin is in use: the safest value, not the riskiest.
NO_MARGIN_RATE: Final = 9999.99
# Gate: at or below 100 % maintenance margin rate liquidation starts; ~110 % forced repayment.
LIQUIDATION_RATE: Final = 1.0
FORCED_REPAYMENT_RATE: Final = 1.1

# -- gate_unified_asset_detail: WebSocket short key -> long name ---------------------

DETAIL_AVAILABLE: Final = "available"
DETAIL_FREEZE: Final = "freeze"
DETAIL_EQUITY: Final = "equity"
DETAIL_LIABILITIES: Final = "total_liab"
DETAIL_BALANCE: Final = "balance"

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
    "imr": "initial_margin_rate",
    "mmr": "maintenance_margin_rate",
    "am": "available_margin",
    "iam": "iso_available_margin",
}

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
STAT_FRAMES_INVALID: Final = "frames_invalid"
STAT_FRAMES_REJECTED: Final = "frames_rejected"
STAT_FIELDS_INVALID: Final = "fields_invalid"
STAT_GATE_ERRORS: Final = "gate_errors"
STAT_RECONNECTS: Final = "reconnects"
STAT_GAPS: Final = "gaps"
STAT_KEY_REPLACEMENTS: Final = "key_replacements"
STAT_KEY_ROTATIONS: Final = "key_rotations"
STAT_KEY_ERRORS: Final = "key_errors"
STAT_KEY_CONFIG_REFUSALS: Final = "key_config_refusals"
STAT_POINTS_WRITTEN: Final = "points_written"
STAT_POINTS_DROPPED: Final = "points_dropped"
STAT_POINTS_REJECTED: Final = "points_rejected"
STAT_WRITE_ERRORS: Final = "write_errors"
STAT_WRITE_TIME_MS: Final = "write_time_ms"
STAT_BUFFER_SIZE: Final = "buffer_size"
STAT_SPOOL_BYTES: Final = "spool_bytes"
