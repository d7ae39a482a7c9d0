"""Grafana alert rules (file provisioning), each one InfluxQL query, a reduction and a threshold.

The rules read the same measurements as the dashboards: per-account rules from
``gate_account_state`` (written every stats interval for every account, so a
quiet account is still judged), collector rules from ``collector_stats``. Each
series is its own alert instance (per account, per instance/shard).

What these can see: only what reached InfluxDB. ``collector_stats`` travels
through the sink it describes, so while InfluxDB is not taking writes no stats
arrive (they are back-filled after); a rule on the spool or on write errors would
fire only after the outage. Those delivery alerts are Prometheus rules on the
live ``/metrics`` (deploy/prometheus/gate-collector-rules.yaml). Here, "Collector
silent" is the one delivery rule, and it says honestly that silence means the
collector stopped OR InfluxDB is not taking its writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from collector.devtools.grafana.builder import DATASOURCE_UID, q
from collector.points import schema

FOLDER: Final = "Gate"
EVALUATE_EVERY: Final = "1m"
STALE_SECONDS: Final = 3600


@dataclass(frozen=True)
class Rule:
    """One alert: ``reducer(query) op threshold`` for ``pending``."""

    uid: str
    title: str
    query: str
    op: str  # Grafana's evaluator: "gt" or "lt"
    threshold: float
    summary: str
    minutes: int = 10  # the query's time range, back from now
    reducer: str = "last"
    pending: str = "5m"
    severity: str = "warning"
    no_data: str = "OK"  # "Alerting" where silence itself is the problem


def _per_account(field_name: str) -> str:
    return (
        f"SELECT last({q(field_name)}) FROM {q(schema.ACCOUNT_STATE)} WHERE $timeFilter "
        f"GROUP BY {q(schema.TAG_ACCOUNT)}, {q(schema.TAG_ACCOUNT_LABEL)}"
    )


def _per_shard(expression: str, extra: str = "") -> str:
    return (
        f"SELECT {expression} FROM {q(schema.COLLECTOR_STATS)} WHERE $timeFilter{extra} "
        f"GROUP BY {q(schema.TAG_INSTANCE)}, {q(schema.TAG_SHARD)}"
    )


def rules(margin_alert_rate: float = schema.MARGIN_ALERT_RATE) -> list[Rule]:
    """Every rule; ``margin_alert_rate`` is a ratio (1.5 = 150 %)."""
    stats = schema.COLLECTOR_STATS
    return [
        Rule(
            "gate-margin-low",
            f"Maintenance margin rate below {margin_alert_rate:.0%}",
            # the rate that applies in the account's mode (schema.EFFECTIVE_...): never a 0
            # Gate reports because the account-level rate does not apply (single-currency)
            _per_account(schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE),
            "lt",
            margin_alert_rate,
            "{{ $labels.account_label }} ({{ $labels.account }}): maintenance margin rate "
            "{{ humanizePercentage $values.B.Value }}; Gate liquidates at 100 % or below.",
            pending="1m",
            severity="critical",
        ),
        Rule(
            "gate-account-stale",
            "Account stale",
            _per_account(schema.STATE_SECONDS_SINCE_UPDATE),
            "gt",
            STALE_SECONDS,
            "{{ $labels.account_label }} ({{ $labels.account }}): no update for "
            "{{ humanizeDuration $values.B.Value }} although snapshots should refresh it.",
        ),
        Rule(
            "gate-account-broken",
            "Account session not connected",
            _per_account(schema.STATE_SESSION),
            "gt",
            schema.SESSION_CONNECTED,
            "{{ $labels.account_label }} ({{ $labels.account }}): session state "
            "{{ $values.B.Value }} (1 disconnected, 2 over capacity).",
        ),
        Rule(
            "gate-sessions-below-total",
            "Sessions connected below total",
            _per_shard(
                f"last({q(schema.STAT_SESSIONS_TOTAL)}) - last({q(schema.STAT_SESSIONS_CONNECTED)})"
            ),
            "gt",
            0,
            "{{ $labels.instance }} shard {{ $labels.shard }}: {{ $values.B.Value }} sessions "
            "not connected.",
        ),
        Rule(
            "gate-over-capacity",
            "Accounts over capacity",
            _per_shard(f"last({q(schema.STAT_SESSIONS_OVER_CAPACITY)})"),
            "gt",
            0,
            "{{ $labels.instance }}: {{ $values.B.Value }} accounts get no session (300 per "
            "IP): add gate.source_addresses or a shard.",
            pending="1m",
        ),
        Rule(
            "gate-collector-silent",
            "Collector silent",
            # Counted per 3-min bucket with fill(0), so an instance that stopped shows 0
            # rather than vanishing; the bucket at "now" is partial, and "for: 5m"
            # outlasts the few seconds it may hold no point yet.
            f"SELECT count({q(schema.STAT_SESSIONS_TOTAL)}) FROM {q(stats)} WHERE $timeFilter "
            f"GROUP BY time(3m), {q(schema.TAG_INSTANCE)}, {q(schema.TAG_SHARD)} fill(0)",
            "lt",
            1,
            "{{ $labels.instance }} shard {{ $labels.shard }}: no collector_stats for 3 "
            "minutes: the collector stopped, or InfluxDB is not taking its writes (the "
            "Prometheus rules on /metrics tell which).",
            minutes=60,
            severity="critical",
            no_data="Alerting",
        ),
    ]


def _grafana_rule(rule: Rule) -> dict[str, Any]:
    query = {
        "refId": "A",
        "datasource": {"type": "influxdb", "uid": DATASOURCE_UID},
        "query": rule.query,
        "rawQuery": True,
        "resultFormat": "time_series",
        "intervalMs": 1000,
        "maxDataPoints": 43200,
    }
    expression = {"type": "__expr__", "uid": "__expr__"}
    return {
        "uid": rule.uid,
        "title": rule.title,
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": rule.minutes * 60, "to": 0},
                "datasourceUid": DATASOURCE_UID,
                "model": query,
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "B",
                    "datasource": expression,
                    "type": "reduce",
                    "expression": "A",
                    "reducer": rule.reducer,
                },
            },
            {
                "refId": "C",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "C",
                    "datasource": expression,
                    "type": "threshold",
                    "expression": "B",
                    "conditions": [{"evaluator": {"type": rule.op, "params": [rule.threshold]}}],
                },
            },
        ],
        "noDataState": rule.no_data,
        "execErrState": "Alerting" if rule.no_data == "Alerting" else "Error",
        "for": rule.pending,
        "annotations": {"summary": rule.summary},
        "labels": {"severity": rule.severity, "team": "gate-collector"},
        "isPaused": False,
    }


def alert_rules(margin_alert_rate: float = schema.MARGIN_ALERT_RATE) -> dict[str, Any]:
    """Grafana's alerting provisioning document."""
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "gate-collector",
                "folder": FOLDER,
                "interval": EVALUATE_EVERY,
                "rules": [_grafana_rule(r) for r in rules(margin_alert_rate)],
            }
        ],
    }


def render_rules(document: dict[str, Any]) -> str:
    """The committed form: JSON is YAML, and the header says how it was made."""
    header = (
        "# Grafana alert rules for gate-collector, made by `python -m collector.devtools.grafana`\n"
        "# (--margin-alert-rate 1.5 sets the margin rule's level). Copy to\n"
        "# /etc/grafana/provisioning/alerting/. Do not edit: regenerate.\n"
    )
    return header + json.dumps(document, indent=2, sort_keys=True) + "\n"
