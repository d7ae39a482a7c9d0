"""The shipped Prometheus alerting rules: promtool's check and unit tests, and the
operator's PrometheusRule carrying the very same groups."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "gate-collector-rules.yaml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "gate-collector-rules.test.yaml"
OPERATOR_RULE = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"
# What the issue asks an operator be alerted on, by the rule that does it.
REQUIRED = {
    "GateCollectorDown",  # collector down
    "GateCollectorInfluxNotTakingWrites",  # InfluxDB not taking writes for N minutes
    "GateCollectorSpoolGrowing",
    "GateCollectorPointsDropped",  # any point dropped ...
    "GateCollectorPointsRejected",  # ... or rejected
    "GateCollectorSessionsBelowTotal",
    "GateCollectorAccountsOverCapacity",
    "GateCollectorStaleAccounts",
    "GateCollectorGateApiFailing",  # Gate's broker API not answering discovery
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool comes with Debian's prometheus (deploy/install-test-servers.sh)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def alerts(groups: list[dict[str, Any]]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"]}


def test_promtool_check_rules_passes() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(REQUIRED)} rules found" in result.stdout


def test_every_rule_passes_its_promtool_unit_test() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_are_the_ones_asked_for_and_each_has_a_unit_test() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert alerts(groups) == REQUIRED
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert tested == REQUIRED


def test_the_operators_prometheusrule_holds_the_same_groups() -> None:
    operator = yaml.safe_load(OPERATOR_RULE.read_text())
    assert (operator["apiVersion"], operator["kind"]) == (
        "monitoring.coreos.com/v1",
        "PrometheusRule",
    )
    assert operator["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_promtool_would_catch_a_broken_rule_and_a_failing_expectation(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(RULES.read_text().replace("== 0\n", "=== 0\n", 1))
    assert promtool("check", "rules", str(broken)).returncode != 0
    # The same unit tests against rules whose InfluxDB alert waits 6 minutes: red.
    slower = tmp_path / "deploy" / "prometheus" / RULES.name
    slower.parent.mkdir(parents=True)
    slower.write_text(RULES.read_text().replace("for: 5m\n", "for: 6m\n", 1))
    tests = tmp_path / "tests" / "prometheus" / RULE_TESTS.name
    tests.parent.mkdir(parents=True)
    tests.write_text(RULE_TESTS.read_text())
    result = promtool("test", "rules", str(tests))
    assert result.returncode != 0
    assert "GateCollectorInfluxNotTakingWrites" in result.stdout + result.stderr


@pytest.mark.parametrize("path", [RULES, OPERATOR_RULE], ids=lambda p: p.name)
def test_rules_carry_a_severity_summary_and_description(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    groups = doc["groups"] if "groups" in doc else doc["spec"]["groups"]
    for group in groups:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
