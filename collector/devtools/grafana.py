"""The Grafana dashboards, as code: ``python -m collector.devtools.grafana`` writes the JSON.

Three dashboards over the data contract (DESIGN.md section 4), all InfluxQL, so
they run on InfluxDB 1.x, on 2.x through DBRP mappings, and on 3.x. Built here
so that every panel shares the same datasource variable, grid and conventions;
the JSON files in ``deploy/grafana/provisioning/dashboards/`` are committed and a
test checks they equal this output.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

OUT_DIR: Final = Path("deploy/grafana/provisioning/dashboards")
DATASOURCE: Final = {"type": "influxdb", "uid": "${datasource}"}
SCHEMA_VERSION: Final = 39
ACCOUNT: Final = '"account" =~ /^$account$/'
INSTANCE: Final = '"instance" =~ /^$instance$/'


def target(query: str, ref: str = "A", table: bool = False, alias: str = "") -> dict[str, Any]:
    """A raw InfluxQL query of a panel."""
    out: dict[str, Any] = {
        "refId": ref,
        "datasource": DATASOURCE,
        "query": query,
        "rawQuery": True,
        "resultFormat": "table" if table else "time_series",
    }
    if alias:
        out["alias"] = alias
    return out


@dataclass
class Board:
    """A dashboard under construction: panels flow left to right, top to bottom."""

    uid: str
    title: str
    description: str
    variables: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    panels: list[dict[str, Any]] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _row_height: int = 0

    def add(
        self,
        kind: str,
        title: str,
        targets: list[dict[str, Any]],
        *,
        width: int = 12,
        height: int = 8,
        unit: str = "none",
        description: str = "",
        options: dict[str, Any] | None = None,
        transformations: list[dict[str, Any]] | None = None,
        overrides: list[dict[str, Any]] | None = None,
    ) -> None:
        """Append a panel, wrapping to a new row when the 24 columns are used."""
        for index, query in enumerate(targets):
            query["refId"] = chr(ord("A") + index)
        if self._x + width > 24:
            self._x, self._y = 0, self._y + self._row_height
            self._row_height = 0
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": {"x": self._x, "y": self._y, "w": width, "h": height},
            "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": overrides or []},
            "options": options or {},
        }
        if transformations:
            panel["transformations"] = transformations
        self.panels.append(panel)
        self._x += width
        self._row_height = max(self._row_height, height)

    def json(self) -> dict[str, Any]:
        """The dashboard model Grafana loads."""
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["gate", "gate-collector"],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": [datasource_variable(), *self.variables]},
            "annotations": {"list": [builtin_annotation(), *self.annotations]},
            "panels": self.panels,
            "links": [
                {
                    "title": "Gate dashboards",
                    "type": "dashboards",
                    "icon": "external link",
                    "tooltip": "",
                    "tags": ["gate-collector"],
                    "asDropdown": True,
                    "targetBlank": False,
                    "includeVars": True,
                    "keepTime": True,
                }
            ],
        }


def datasource_variable() -> dict[str, Any]:
    """Pick the InfluxDB datasource (the provisioned one by default)."""
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "InfluxDB",
        "query": "influxdb",
        "current": {"text": "gate-influxdb", "value": "gate-influxdb"},
        "hide": 0,
    }


def builtin_annotation() -> dict[str, Any]:
    """Grafana's own annotations and alerts."""
    return {
        "name": "Annotations & Alerts",
        "builtIn": 1,
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "type": "dashboard",
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    }


def query_variable(
    name: str, label: str, query: str, *, multi: bool = False, include_all: bool = False
) -> dict[str, Any]:
    """A template variable filled by an InfluxQL ``SHOW TAG VALUES``."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 3,
        "multi": multi,
        "includeAll": include_all,
        "hide": 0,
    }


def stat(reducer: str = "lastNotNull") -> dict[str, Any]:
    """Options of a single-value panel."""
    return {
        "reduceOptions": {"calcs": [reducer], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "textMode": "auto",
    }


def _last_per_account(field_name: str, alias: str, where: str = "$timeFilter") -> str:
    return (
        f'SELECT last("{field_name}") AS "{alias}" FROM "gate_unified_assets" '
        f'WHERE {where} GROUP BY "account"'
    )


def broker_overview() -> Board:
    """Totals across accounts, who is closest to liquidation, who went quiet."""
    board = Board(
        "gate-broker-overview",
        "Gate broker overview",
        "All sub-accounts of the broker: totals, margin risk, stale data.",
    )
    board.variables.append(
        {
            "type": "custom",
            "name": "stale_minutes",
            "label": "Stale after (minutes)",
            "query": "5,15,60",
            "current": {"text": "15", "value": "15"},
            "options": [{"text": v, "value": v, "selected": v == "15"} for v in ("5", "15", "60")],
            "hide": 0,
        }
    )
    sum_of = 'SELECT sum("v") FROM ({inner})'
    board.add(
        "stat",
        "Total equity",
        [target(sum_of.format(inner=_last_per_account("unified_account_total_equity", "v")))],
        width=6,
        height=5,
        options=stat(),
        description="Sum of each account's last equity.",
    )
    board.add(
        "stat",
        "Total liabilities",
        [target(sum_of.format(inner=_last_per_account("unified_account_total_liab", "v")))],
        width=6,
        height=5,
        options=stat(),
    )
    board.add(
        "stat",
        "Accounts reporting",
        [target('SELECT count("v") FROM ({inner})'.format(inner=_last_per_account("u", "v")))],
        width=6,
        height=5,
        options=stat(),
        description="Accounts with data in the time range.",
    )
    board.add(
        "stat",
        "Accounts fresh in the last $stale_minutes min",
        [
            target(
                'SELECT count("v") FROM ({inner})'.format(
                    inner=_last_per_account("u", "v", "time > now() - ${stale_minutes}m")
                )
            )
        ],
        width=6,
        height=5,
        options=stat(),
        description="Fewer than 'Accounts reporting' means some accounts went stale.",
    )
    board.add(
        "timeseries",
        "Total equity over time",
        [
            target(
                'SELECT sum("v") FROM (SELECT last("unified_account_total_equity") AS "v" '
                'FROM "gate_unified_assets" WHERE $timeFilter '
                'GROUP BY time($__interval), "account" fill(previous)) '
                "WHERE $timeFilter GROUP BY time($__interval)",
                alias="equity",
            )
        ],
        width=24,
        height=8,
    )
    board.add(
        "table",
        "Closest to liquidation (maintenance margin rate, highest first)",
        [
            target(
                'SELECT last("total_maintenance_margin_rate") AS "maintenance margin rate %", '
                'last("total_initial_margin_rate") AS "initial margin rate %", '
                'last("unified_account_total_equity") AS "equity" FROM "gate_unified_assets" '
                'WHERE $timeFilter GROUP BY "account", "account_label"',
                table=True,
            )
        ],
        width=12,
        height=10,
        options={"sortBy": [{"displayName": "maintenance margin rate %", "desc": True}]},
    )
    board.add(
        "table",
        "Last update per account (oldest first: stale at the top)",
        [
            target(
                'SELECT last("u") AS "u" FROM "gate_unified_assets" WHERE $timeFilter '
                'GROUP BY "account", "account_label"',
                table=True,
            )
        ],
        width=12,
        height=10,
        options={"sortBy": [{"displayName": "Time", "desc": False}]},
    )
    board.add(
        "table",
        "All accounts",
        [
            target(
                'SELECT last("unified_account_total_equity") AS "equity", '
                'last("unified_account_total_liab") AS "liabilities", '
                'last("unified_account_total") AS "total", '
                'last("total_available_margin") AS "available margin", '
                'last("total_margin_balance") AS "margin balance" '
                'FROM "gate_unified_assets" WHERE $timeFilter GROUP BY "account", "account_label"',
                table=True,
            )
        ],
        width=24,
        height=12,
    )
    return board


def account_detail() -> Board:
    """One account over time: assets overview, per-currency balances, gaps."""
    board = Board(
        "gate-account-detail",
        "Gate account detail",
        "One sub-account: unified assets and per-currency balances over time.",
    )
    board.variables.append(
        query_variable(
            "account", "Account", 'SHOW TAG VALUES FROM "gate_unified_assets" WITH KEY = "account"'
        )
    )
    board.variables.append(
        query_variable(
            "currency",
            "Currency",
            'SHOW TAG VALUES FROM "gate_unified_asset_detail" WITH KEY = "currency" '
            'WHERE "account" =~ /^$account$/',
            multi=True,
            include_all=True,
        )
    )
    board.annotations.append(
        {
            "name": "Sequence gaps",
            "datasource": DATASOURCE,
            "enable": True,
            "iconColor": "red",
            "target": target(
                'SELECT "channel", "reason", "missed", "expected", "received" '
                f'FROM "gate_sequence_gap" WHERE {ACCOUNT} AND $timeFilter',
                ref="Anno",
                table=True,
            ),
            "mappings": {
                "text": {"source": "field", "value": "channel"},
                "tags": {"source": "field", "value": "reason"},
            },
        }
    )

    def over_time(
        fields: dict[str, str], measurement: str, extra: str = "", group: str = ""
    ) -> list[dict[str, Any]]:
        selects = ", ".join(f'last("{f}") AS "{alias}"' for f, alias in fields.items())
        return [
            target(
                f'SELECT {selects} FROM "{measurement}" WHERE {ACCOUNT}{extra} AND $timeFilter '
                f"GROUP BY time($__interval){group} fill(previous)"
            )
        ]

    board.add(
        "timeseries",
        "Equity, liabilities, total",
        over_time(
            {
                "unified_account_total_equity": "equity",
                "unified_account_total_liab": "liabilities",
                "unified_account_total": "total",
                "total_available_margin": "available margin",
            },
            "gate_unified_assets",
        ),
        width=12,
    )
    board.add(
        "timeseries",
        "Margin rates (%)",
        over_time(
            {
                "total_initial_margin_rate": "initial margin rate",
                "total_maintenance_margin_rate": "maintenance margin rate",
            },
            "gate_unified_assets",
        ),
        width=12,
        unit="percent",
    )
    currency = ' AND "currency" =~ /^$currency$/'
    for field_name, title in (
        ("available", "Available"),
        ("freeze", "Frozen"),
        ("equity", "Equity"),
        ("total_liab", "Liabilities"),
    ):
        board.add(
            "timeseries",
            f"{title} per currency",
            [
                target(
                    f'SELECT last("{field_name}") FROM "gate_unified_asset_detail" '
                    f"WHERE {ACCOUNT}{currency} AND $timeFilter "
                    'GROUP BY time($__interval), "currency" fill(previous)',
                    alias="$tag_currency",
                )
            ],
            width=12,
        )
    board.add(
        "table",
        "Sequence gaps and reconnects",
        [
            target(
                'SELECT "channel", "reason", "expected", "received", "missed" '
                f'FROM "gate_sequence_gap" WHERE {ACCOUNT} AND $timeFilter',
                table=True,
            )
        ],
        width=24,
    )
    return board


def collector_health() -> Board:
    """Is the collector well: sessions, throughput, buffer, writes, gaps."""
    board = Board(
        "gate-collector-health",
        "Gate collector health",
        "The collector's own metrics (collector_stats) and sequence gaps.",
    )
    board.variables.append(
        query_variable(
            "instance",
            "Instance",
            'SHOW TAG VALUES FROM "collector_stats" WITH KEY = "instance"',
            multi=True,
            include_all=True,
        )
    )

    def stats(expression: str, alias: str) -> dict[str, Any]:
        return target(
            f'SELECT {expression} AS "{alias}" FROM "collector_stats" '
            f'WHERE {INSTANCE} AND $timeFilter GROUP BY time($__interval), "instance", "shard"',
            alias=f"$tag_instance $tag_shard {alias}",
        )

    board.add(
        "timeseries",
        "Sessions connected vs total",
        [
            stats('last("sessions_connected")', "connected"),
            stats('last("sessions_total")', "total"),
        ],
    )
    board.add(
        "timeseries",
        "Sessions over capacity",
        [stats('last("sessions_over_capacity")', "over capacity")],
        description="Accounts not connected because of the 300-per-IP limit: add a shard "
        "or gate.source_addresses.",
    )
    board.add(
        "timeseries",
        "Frames per second",
        [
            stats('non_negative_derivative(last("frames_received"), 1s)', "frames/s"),
            stats('non_negative_derivative(last("frames_invalid"), 1s)', "invalid/s"),
        ],
        unit="ops",
    )
    board.add(
        "timeseries",
        "Points written per second",
        [
            stats('non_negative_derivative(last("points_written"), 1s)', "written/s"),
            stats('non_negative_derivative(last("points_rejected"), 1s)', "rejected/s"),
            stats('non_negative_derivative(last("points_dropped"), 1s)', "dropped/s"),
        ],
        unit="ops",
    )
    board.add(
        "timeseries",
        "Buffer (points in memory)",
        [stats('last("buffer_size")', "buffer")],
        width=6,
        description="Points waiting in memory for InfluxDB.",
    )
    board.add(
        "timeseries",
        "Spool (bytes on disk)",
        [stats('last("spool_bytes")', "spool")],
        width=6,
        unit="bytes",
        description="Batches kept on disk while InfluxDB is unreachable; replayed first.",
    )
    board.add(
        "timeseries",
        "Write errors",
        [stats('non_negative_difference(last("write_errors"))', "errors")],
        width=6,
    )
    board.add(
        "timeseries",
        "Write latency",
        [stats('mean("write_time_ms")', "write")],
        width=6,
        unit="ms",
    )
    board.add(
        "timeseries",
        "Reconnects and gaps",
        [
            stats('non_negative_difference(last("reconnects"))', "reconnects"),
            stats('non_negative_difference(last("gaps"))', "gaps"),
        ],
    )
    board.add(
        "timeseries",
        "Bad input from Gate",
        [
            stats('non_negative_difference(last("frames_invalid"))', "invalid frames"),
            stats('non_negative_difference(last("fields_invalid"))', "invalid fields"),
            stats('non_negative_difference(last("frames_rejected"))', "rejected frames"),
            stats('non_negative_difference(last("gate_errors"))', "error frames"),
        ],
        description="Counted and logged; the good part of each update is still written. "
        "Rejected frames carry another account's u: a key paired with the wrong account.",
    )
    board.add(
        "table",
        "Reconnects and gaps per account",
        [
            target(
                'SELECT count("missed") AS "events", sum("missed") AS "updates missed" '
                'FROM "gate_sequence_gap" WHERE $timeFilter AND "missed" >= 0 '
                'GROUP BY "account", "reason"',
                table=True,
            )
        ],
        description="reason=reconnect: the session reconnected; reason=sequence: Gate's u skipped.",
    )
    return board


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON."""
    return {
        "broker-overview.json": broker_overview().json(),
        "account-detail.json": account_detail().json(),
        "collector-health.json": collector_health().json(),
    }


def render(dashboard: dict[str, Any]) -> str:
    """The committed form of a dashboard."""
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def main(out_dir: Path = OUT_DIR) -> None:
    """Write every dashboard to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, dashboard in dashboards().items():
        (out_dir / name).write_text(render(dashboard))
        print(f"wrote {out_dir / name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR)
