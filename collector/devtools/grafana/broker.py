"""The broker overview: what a risk person asks first, right over any time range.

Every money figure comes from the shards' ``gate_broker_totals`` /
``gate_currency_totals`` (each shard writes the totals of its accounts' last
known values every stats interval) and every per-account row from
``gate_account_state`` (one point per account per stats interval), never from a
``last()`` over raw pushes: an account quiet for hours is in every range.
"""

from __future__ import annotations

from typing import Any, Final

from collector.devtools.grafana.builder import (
    MONEY,
    RATE,
    TOTALS_MIN_INTERVAL,
    Board,
    account_link,
    colour_cells,
    column,
    custom_variable,
    margin_thresholds,
    no_margin_mapping,
    q,
    session_state_mapping,
    stat,
    steps,
    table,
    target,
)
from collector.points import schema

STALE_OPTIONS: Final = {"5 min": "300", "15 min": "900", "1 h": "3600", "6 h": "21600"}
MMR: Final = "maintenance margin rate"
IMR: Final = "initial margin rate"
MODE: Final = "mode"
SINCE_UPDATE: Final = "seconds since update"
TOTALS: Final = {
    schema.EQUITY: "equity",
    schema.LIABILITIES: "liabilities",
    schema.TOTAL: "total",
    schema.AVAILABLE_MARGIN: "available margin",
}
CURRENCY: Final = {
    schema.DETAIL_EQUITY: "equity",
    schema.DETAIL_LIABILITIES: "liabilities",
    schema.DETAIL_AVAILABLE: "available",
    schema.DETAIL_FREEZE: "frozen",
}


def shard_sum(
    measurement: str, fields: dict[str, str], *, over_time: bool = False, by: tuple[str, ...] = ()
) -> str:
    """Sum over shards of each shard's last value in the range (or per time bucket)."""
    inner = ", ".join(f"last({q(f)}) AS {q(alias)}" for f, alias in fields.items())
    outer = ", ".join(f"sum({q(alias)}) AS {q(alias)}" for alias in fields.values())
    time = ["time($__interval)"] if over_time else []
    inner_group = ", ".join([*time, q(schema.TAG_SHARD), *map(q, by)])
    outer_group = ", ".join([*time, *map(q, by)])
    query = (
        f"SELECT {outer} FROM (SELECT {inner} FROM {q(measurement)} WHERE $timeFilter "
        f"GROUP BY {inner_group})"
    )
    if over_time:
        query += " WHERE $timeFilter"
    return query + (f" GROUP BY {outer_group}" if outer_group else "")


def per_account(fields: dict[str, str]) -> str:
    """Each account's last state in the range (written every stats interval, quiet or not)."""
    selects = ", ".join(f"last({q(f)}) AS {q(alias)}" for f, alias in fields.items())
    return (
        f"SELECT {selects} FROM {q(schema.ACCOUNT_STATE)} WHERE $timeFilter "
        f"GROUP BY {q(schema.TAG_ACCOUNT)}, {q(schema.TAG_ACCOUNT_LABEL)}"
    )


def count_accounts(field_name: str, condition: str) -> str:
    """How many accounts' last ``field_name`` in the range meets ``condition``."""
    return (
        f'SELECT count("v") FROM (SELECT last({q(field_name)}) AS "v" '
        f"FROM {q(schema.ACCOUNT_STATE)} WHERE $timeFilter GROUP BY {q(schema.TAG_ACCOUNT)}) "
        f'WHERE "v" {condition}'
    )


def lowest_margin_rate() -> str:
    """The lowest maintenance margin rate of any account: the broker's nearest liquidation.

    Each account's effective rate (the one that applies in its mode), so a
    single-currency account's account-level 0 is never the minimum.
    """
    return (
        f'SELECT min("v") FROM (SELECT last({q(schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE)}) AS "v" '
        f"FROM {q(schema.ACCOUNT_STATE)} WHERE $timeFilter GROUP BY {q(schema.TAG_ACCOUNT)})"
    )


HIDE_TIME: Final = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]


def broker_overview() -> Board:
    """Totals across accounts, who is closest to liquidation, who went quiet or broke."""
    board = Board(
        "gate-broker-overview",
        "Gate broker overview",
        "All sub-accounts of the broker: totals, margin risk, stale and broken sessions. "
        "Values are each account's last known state, however long ago it changed.",
    )
    board.variables.append(
        custom_variable("stale_seconds", "Stale after", STALE_OPTIONS, current="1 h")
    )
    _totals_row(board)
    board.add(
        "timeseries",
        "Broker totals over time",
        [target(shard_sum(schema.BROKER_TOTALS, TOTALS, over_time=True), alias="$col")],
        width=12,
        interval=TOTALS_MIN_INTERVAL,
        description="Sum of the shards' totals in each interval (never shorter than 1 min, "
        "so every shard's stats point is in every bucket).",
        unit=MONEY,
        defaults={"decimals": 2},
    )
    board.add(
        "timeseries",
        "Liabilities over time",
        [
            target(
                shard_sum(
                    schema.BROKER_TOTALS, {schema.LIABILITIES: "liabilities"}, over_time=True
                ),
                alias="$col",
            )
        ],
        width=12,
        interval=TOTALS_MIN_INTERVAL,
        unit=MONEY,
        defaults={"decimals": 2},
    )
    _liquidation_table(board)
    board.add(
        "table",
        "Per currency, broker-wide",
        [target(shard_sum(schema.CURRENCY_TOTALS, CURRENCY, by=(schema.TAG_CURRENCY,)), True)],
        width=12,
        height=10,
        options=table("equity", desc=True),
        transformations=HIDE_TIME,
        description="Each currency summed over all accounts (amounts in the currency itself).",
    )
    board.add(
        "timeseries",
        "Equity per currency over time",
        [
            target(
                shard_sum(
                    schema.CURRENCY_TOTALS,
                    {schema.DETAIL_EQUITY: "equity"},
                    over_time=True,
                    by=(schema.TAG_CURRENCY,),
                ),
                alias="$tag_currency",
            )
        ],
        width=12,
        interval=TOTALS_MIN_INTERVAL,
        description="Amounts in each currency's own unit.",
    )
    _staleness_table(board)
    board.add(
        "table",
        "All accounts",
        [target(per_account({**TOTALS, schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE: MMR}), True)],
        width=24,
        height=12,
        unit=MONEY,
        options=table("equity", desc=True),
        transformations=HIDE_TIME,
        overrides=[account_link(), column(MMR, unit=RATE, mappings=[no_margin_mapping()])],
    )
    return board


def _totals_row(board: Board) -> None:
    for field_name, alias in TOTALS.items():
        board.add(
            "stat",
            f"Total {alias}",
            [target(shard_sum(schema.BROKER_TOTALS, {field_name: "v"}))],
            description=f"Sum over all accounts of their last {alias} (USDT).",
            width=3,
            height=5,
            unit=MONEY,
            options=stat(),
            defaults={"decimals": 2},
        )
    board.add(
        "stat",
        "Accounts with data",
        [target(shard_sum(schema.BROKER_TOTALS, {schema.TOTALS_ACCOUNTS: "v"}))],
        width=3,
        height=5,
        options=stat(),
    )
    board.add(
        "stat",
        "Lowest maintenance margin rate",
        [target(lowest_margin_rate())],
        width=3,
        height=5,
        unit=RATE,
        options=stat(),
        defaults={"thresholds": margin_thresholds(), "mappings": [no_margin_mapping()]},
        description="Liquidation at 100 % or below, forced repayment near 110 %.",
    )
    alarm_count = {"thresholds": steps((None, "green"), (1, "red")), "noValue": "0"}
    board.add(
        "stat",
        "Stale accounts (no update for $stale_seconds s)",
        [target(count_accounts(schema.STATE_SECONDS_SINCE_UPDATE, "> $stale_seconds"))],
        width=3,
        height=5,
        options=stat(),
        defaults=alarm_count,
    )
    board.add(
        "stat",
        "Sessions not connected",
        [target(count_accounts(schema.STATE_SESSION, f"> {schema.SESSION_CONNECTED}"))],
        width=3,
        height=5,
        options=stat(),
        defaults=alarm_count,
        description="Broken or over capacity: see 'Accounts by staleness'. A stale account "
        "whose session is connected is only quiet.",
    )


def _liquidation_table(board: Board) -> None:
    fields = {
        schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE: MMR,
        schema.EFFECTIVE_INITIAL_MARGIN_RATE: IMR,
        schema.STATE_MODE: MODE,
        schema.EQUITY: "equity",
        schema.LIABILITIES: "liabilities",
    }
    rate: dict[str, Any] = {"unit": RATE, "thresholds": margin_thresholds()}
    board.add(
        "table",
        "Closest to liquidation (lowest maintenance margin rate first)",
        [target(per_account(fields), table=True)],
        width=12,
        height=10,
        unit=MONEY,
        options=table(MMR, desc=False),
        transformations=HIDE_TIME,
        description="Gate: the higher the rate the safer; liquidation at 100 % or below, "
        "forced repayment near 110 %. The rate that applies in the account's mode: the "
        "account's in multi-currency and portfolio mode, USDT's in single-currency mode. "
        "Exactly 9999.99 = no margin in use; REST rates above it are real ratios.",
        overrides=[
            account_link(),
            column(
                MMR,
                **rate,
                mappings=[no_margin_mapping()],
                custom={"cellOptions": colour_cells()},
            ),
            column(IMR, **rate, mappings=[no_margin_mapping()]),
            column(MODE, unit="none"),
        ],
    )


def _staleness_table(board: Board) -> None:
    fields = {
        schema.STATE_SECONDS_SINCE_UPDATE: SINCE_UPDATE,
        schema.STATE_SESSION: "session",
        schema.STATE_SECONDS_SINCE_FRAME: "seconds since frame",
    }
    board.add(
        "table",
        "Accounts by staleness (stalest first)",
        [target(per_account(fields), table=True)],
        width=12,
        height=10,
        unit="s",
        options=table(SINCE_UPDATE, desc=True),
        transformations=HIDE_TIME,
        description="Quiet (stale, session connected) and broken (session not connected) "
        "are different colours: Gate pushes only on change, a quiet account is not an error.",
        overrides=[
            account_link(),
            column(
                SINCE_UPDATE,
                thresholds=steps((None, "green"), (900, "yellow"), (3600, "orange")),
                custom={"cellOptions": colour_cells()},
            ),
            column(
                "session",
                unit="none",
                mappings=[session_state_mapping()],
                custom={"cellOptions": colour_cells()},
            ),
        ],
    )
