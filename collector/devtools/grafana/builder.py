"""The dashboard builder: panels on a 24-column grid, targets, variables, field config.

Hand-written rather than Grafana's ``grafana-foundation-sdk`` (it installs and
works offline, but has no InfluxDB/InfluxQL query builder, so every target would
still be a raw dict, and it emits an older ``schemaVersion``): this module is the
small part of Grafana's model the dashboards use, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from collector.points import schema

DATASOURCE: Final = {"type": "influxdb", "uid": "${datasource}"}
DATASOURCE_UID: Final = "gate-influxdb"
SCHEMA_VERSION: Final = 39
# Gate values every unified-account money figure in USDT.
MONEY: Final = "suffix: USDT"
# Gate's rates are ratios (1.0 = 100 %): Grafana's percentunit shows them as percent.
RATE: Final = "percentunit"
ACCOUNT_DASHBOARD: Final = "gate-account-detail"
# Panels that sum the shards' totals per time bucket need every bucket to hold one
# stats point of every shard: the bucket is never shorter than this (stats every 10 s).
TOTALS_MIN_INTERVAL: Final = "1m"


def q(name: str) -> str:
    """An InfluxQL identifier, quoted."""
    return f'"{name}"'


def target(query: str, table: bool = False, alias: str = "") -> dict[str, Any]:
    """A raw InfluxQL query of a panel (``refId`` is set by :meth:`Board.add`)."""
    out: dict[str, Any] = {
        "refId": "A",
        "datasource": DATASOURCE,
        "query": query,
        "rawQuery": True,
        "resultFormat": "table" if table else "time_series",
    }
    if alias:
        out["alias"] = alias
    return out


def steps(*levels: tuple[float | None, str]) -> dict[str, Any]:
    """Absolute thresholds: ``(None, base colour), (value, colour from value up), ...``."""
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in levels]}


def margin_thresholds() -> dict[str, Any]:
    """Gate: liquidation at 100 % or below, forced repayment near 110 %; the alert level."""
    return steps(
        (None, "red"),
        (schema.LIQUIDATION_RATE, "orange"),
        (schema.FORCED_REPAYMENT_RATE, "yellow"),
        (schema.MARGIN_ALERT_RATE, "green"),
    )


def no_margin_mapping() -> dict[str, Any]:
    """Gate's 9999.99 means no margin in use: say so, in the safe colour.

    That value exactly (the collector stores it so in either unit of pushed rates,
    and for any rate whose margin is 0), not every rate above it: REST rates are
    plain ratios and not capped (Gate's example: 16499.1356783634).
    """
    return {
        "type": "value",
        "options": {
            f"{schema.NO_MARGIN_RATE:g}": {
                "text": "no margin in use",
                "color": "green",
                "index": 0,
            }
        },
    }


def silent_mapping() -> dict[str, Any]:
    """No value at all is the alarm, not a blank: Grafana runs no-data through mappings."""
    return {
        "type": "special",
        "options": {"match": "null", "result": {"text": "SILENT", "color": "red", "index": 1}},
    }


def session_state_mapping() -> dict[str, Any]:
    """The session_state codes as words and colours."""
    colours = {
        schema.SESSION_CONNECTED: "green",
        schema.SESSION_DISCONNECTED: "red",
        schema.SESSION_OVER_CAPACITY: "purple",
    }
    return {
        "type": "value",
        "options": {
            str(code): {"text": text, "color": colours[code], "index": code}
            for code, text in schema.SESSION_STATE_TEXT.items()
        },
    }


def column(name: str, **properties: Any) -> dict[str, Any]:
    """A field override of one table column by its display name."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties.items()],
    }


def account_link(label_column: str = schema.TAG_ACCOUNT_LABEL) -> dict[str, Any]:
    """The ``account`` column links to the account's detail dashboard, same time range."""
    url = (
        f"/d/{ACCOUNT_DASHBOARD}/{ACCOUNT_DASHBOARD}?var-account=${{__value.raw}}"
        f"&var-account_label=${{__data.fields.{label_column}}}&${{__url_time_range}}"
    )
    return column(schema.TAG_ACCOUNT, links=[{"title": "Account detail", "url": url}])


def colour_cells(mode: str = "color-background") -> dict[str, Any]:
    """Table cells coloured by thresholds and mappings."""
    return {"type": mode}


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
        defaults: dict[str, Any] | None = None,
        transformations: list[dict[str, Any]] | None = None,
        overrides: list[dict[str, Any]] | None = None,
        interval: str = "",
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
            "fieldConfig": {
                "defaults": {"unit": unit, **(defaults or {})},
                "overrides": overrides or [],
            },
            "options": options or {},
        }
        if interval:
            panel["interval"] = interval
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
        "current": {"text": DATASOURCE_UID, "value": DATASOURCE_UID},
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


def custom_variable(name: str, label: str, options: dict[str, str], current: str) -> dict[str, Any]:
    """A fixed choice: ``text -> value``."""
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ", ".join(f"{text} : {value}" for text, value in options.items()),
        "current": {"text": current, "value": options[current]},
        "options": [
            {"text": text, "value": value, "selected": text == current}
            for text, value in options.items()
        ],
        "hide": 0,
    }


def stat(reducer: str = "lastNotNull", graph: bool = False) -> dict[str, Any]:
    """Options of a single-value panel."""
    return {
        "reduceOptions": {"calcs": [reducer], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area" if graph else "none",
        "textMode": "auto",
    }


def table(sort_by: str, desc: bool) -> dict[str, Any]:
    """Options of a table sorted on one column."""
    return {"showHeader": True, "sortBy": [{"displayName": sort_by, "desc": desc}]}
