"""The Grafana dashboards and alert rules, as code: ``python -m collector.devtools.grafana``.

Three dashboards over the data contract (DESIGN.md section 4), all InfluxQL, so
they run on InfluxDB 1.x, on 2.x through DBRP mappings, and on 3.x, and one
alert rule file. The files in ``deploy/grafana/provisioning/`` are committed and
a test checks they equal this output.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from collector.devtools.grafana.alerts import alert_rules, render_rules
from collector.devtools.grafana.boards import account_detail
from collector.devtools.grafana.broker import broker_overview
from collector.devtools.grafana.health import collector_health
from collector.points import schema

OUT_DIR: Final = Path("deploy/grafana/provisioning")
ALERTS_FILE: Final = "alerting/gate-collector.yaml"

__all__ = ["ALERTS_FILE", "OUT_DIR", "alert_rules", "dashboards", "main", "render", "render_rules"]


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


def main(argv: Sequence[str] | None = None) -> None:
    """Write every dashboard and the alert rules under the provisioning folder."""
    parser = argparse.ArgumentParser(prog="python -m collector.devtools.grafana")
    parser.add_argument("out_dir", nargs="?", type=Path, default=OUT_DIR)
    parser.add_argument(
        "--margin-alert-rate",
        type=float,
        default=schema.MARGIN_ALERT_RATE,
        help="alert when an account's maintenance margin rate is below this ratio (1.5 = 150 %%)",
    )
    args = parser.parse_args(argv)
    boards = args.out_dir / "dashboards"
    boards.mkdir(parents=True, exist_ok=True)
    for name, dashboard in dashboards().items():
        (boards / name).write_text(render(dashboard))
        print(f"wrote {boards / name}")
    alerts = args.out_dir / ALERTS_FILE
    alerts.parent.mkdir(parents=True, exist_ok=True)
    alerts.write_text(render_rules(alert_rules(args.margin_alert_rate)))
    print(f"wrote {alerts}")
