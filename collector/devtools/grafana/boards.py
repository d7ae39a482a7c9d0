"""The account detail dashboard: one sub-account over time."""

from __future__ import annotations

from typing import Any, Final

from collector.devtools.grafana.builder import (
    MONEY,
    RATE,
    Board,
    margin_thresholds,
    no_margin_mapping,
    q,
    query_variable,
    session_state_mapping,
    silent_mapping,
    stat,
    steps,
    target,
)
from collector.points import schema

ACCOUNT: Final = f"{q(schema.TAG_ACCOUNT)} =~ /^$account$/"


def account_detail() -> Board:
    """One account over time: its state, assets overview, per-currency balances, gaps."""
    board = Board(
        "gate-account-detail",
        "Gate account detail",
        "One sub-account: session state, unified assets and per-currency balances over time.",
    )
    state = q(schema.ACCOUNT_STATE)
    board.variables.append(
        query_variable(
            schema.TAG_ACCOUNT_LABEL,
            "Account",
            f"SHOW TAG VALUES FROM {state} WITH KEY = {q(schema.TAG_ACCOUNT_LABEL)}",
        )
    )
    board.variables.append(
        query_variable(
            schema.TAG_ACCOUNT,
            "Gate user id",
            f"SHOW TAG VALUES FROM {state} WITH KEY = {q(schema.TAG_ACCOUNT)} "
            f"WHERE {q(schema.TAG_ACCOUNT_LABEL)} =~ /^$account_label$/",
        )
    )
    board.variables.append(
        query_variable(
            "currency",
            "Currency",
            f"SHOW TAG VALUES FROM {q(schema.ASSET_DETAIL)} WITH KEY = {q(schema.TAG_CURRENCY)} "
            f"WHERE {ACCOUNT}",
            multi=True,
            include_all=True,
        )
    )
    gap_fields = ", ".join(
        q(f)
        for f in (
            schema.TAG_CHANNEL,
            schema.TAG_REASON,
            schema.GAP_MISSED,
            schema.GAP_EXPECTED,
            schema.GAP_RECEIVED,
        )
    )
    gaps = f"SELECT {gap_fields} FROM {q(schema.SEQUENCE_GAP)} WHERE {ACCOUNT} AND $timeFilter"
    board.annotations.append(
        {
            "name": "Sequence gaps",
            "datasource": target("")["datasource"],
            "enable": True,
            "iconColor": "red",
            "target": {**target(gaps, table=True), "refId": "Anno"},
            "mappings": {
                "text": {"source": "field", "value": schema.TAG_CHANNEL},
                "tags": {"source": "field", "value": schema.TAG_REASON},
            },
        }
    )

    def last_state(field_name: str) -> list[dict[str, Any]]:
        return [
            target(f"SELECT last({q(field_name)}) FROM {state} WHERE {ACCOUNT} AND $timeFilter")
        ]

    board.add(
        "stat",
        "Session",
        last_state(schema.STATE_SESSION),
        width=6,
        height=4,
        options=stat(),
        defaults={"mappings": [session_state_mapping(), silent_mapping()], "noValue": "SILENT"},
    )
    board.add(
        "stat",
        "Since last update",
        last_state(schema.STATE_SECONDS_SINCE_UPDATE),
        width=6,
        height=4,
        unit="s",
        options=stat(),
        defaults={"thresholds": steps((None, "green"), (900, "yellow"), (3600, "orange"))},
        description="Gate pushes only on change: a quiet account with a connected session is fine.",
    )
    rate = {"thresholds": margin_thresholds(), "mappings": [no_margin_mapping()]}
    board.add(
        "stat",
        "Maintenance margin rate",
        last_state(schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE),
        width=6,
        height=4,
        unit=RATE,
        options=stat(),
        defaults=rate,
        description="The rate that applies in the account's mode: the account's own in "
        "multi-currency and portfolio mode, USDT's in single-currency mode.",
    )
    board.add(
        "stat",
        "Initial margin rate",
        last_state(schema.EFFECTIVE_INITIAL_MARGIN_RATE),
        width=6,
        height=4,
        unit=RATE,
        options=stat(),
        defaults=rate,
    )

    def over_time(fields: dict[str, str]) -> list[dict[str, Any]]:
        selects = ", ".join(f"last({q(f)}) AS {q(alias)}" for f, alias in fields.items())
        return [
            target(
                f"SELECT {selects} FROM {state} WHERE {ACCOUNT} AND $timeFilter "
                "GROUP BY time($__interval) fill(previous)",
                alias="$col",
            )
        ]

    board.add(
        "timeseries",
        "Equity, liabilities, total",
        over_time(
            {
                schema.EQUITY: "equity",
                schema.LIABILITIES: "liabilities",
                schema.TOTAL: "total",
                schema.AVAILABLE_MARGIN: "available margin",
            }
        ),
        width=12,
        unit=MONEY,
        description="The account's last known values, written every stats interval.",
    )
    board.add(
        "timeseries",
        "Margin rates",
        over_time(
            {
                schema.EFFECTIVE_INITIAL_MARGIN_RATE: "initial margin rate",
                schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE: "maintenance margin rate",
            }
        ),
        width=12,
        unit=RATE,
        defaults={
            "thresholds": margin_thresholds(),
            "custom": {"thresholdsStyle": {"mode": "line"}},
        },
    )
    currency = f" AND {q(schema.TAG_CURRENCY)} =~ /^$currency$/"
    for field_name, title in (
        (schema.DETAIL_AVAILABLE, "Available"),
        (schema.DETAIL_FREEZE, "Frozen"),
        (schema.DETAIL_EQUITY, "Equity"),
        (schema.DETAIL_LIABILITIES, "Liabilities"),
    ):
        board.add(
            "timeseries",
            f"{title} per currency",
            [
                target(
                    f"SELECT last({q(field_name)}) FROM {q(schema.ASSET_DETAIL)} "
                    f"WHERE {ACCOUNT}{currency} AND $timeFilter "
                    f"GROUP BY time($__interval), {q(schema.TAG_CURRENCY)} fill(previous)",
                    alias="$tag_currency",
                )
            ],
            width=12,
            description="Amounts in each currency's own unit, as Gate pushed them.",
        )
    board.add(
        "table",
        "Sequence gaps and reconnects",
        [target(gaps, table=True)],
        width=24,
    )
    return board
