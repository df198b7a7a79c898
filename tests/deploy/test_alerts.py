"""The alerts: promtool accepts them, its unit tests prove each fires and stays silent.

``alerts.test.yml`` feeds every alert a failing service beside healthy ones
and expects exactly one alert. The mutation test below proves those tests can
fail: an alert that never fires must make ``promtool test rules`` fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.deploy.rules import ALERTS, MANIFEST, render, rule_groups
from tests.deploy.tools import DEPLOY, ROOT, exposed_metric_names, metric_names, run, tool

UNIT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
REQUIRED = {
    "CustomerSyncConsumerLagGrowing",
    "CustomerSyncDeadLetterRateHigh",
    "CustomerSyncJobsFailing",
    "CustomerSyncCredentialsRejected",
    "CustomerSyncNoCommits",
    "CustomerSyncJobsStuck",
    "CustomerSyncDeadLetterBreakerOpen",
}


def alerts() -> list[dict[str, object]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    result = run([tool("promtool"), "check", "rules", ALERTS])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run([tool("promtool"), "test", "rules", UNIT_TESTS])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_required_alert_exists_and_has_a_unit_test() -> None:
    names = {str(rule["alert"]) for rule in alerts()}
    assert names == REQUIRED
    tested = {
        case["alertname"]
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert tested == REQUIRED


@pytest.mark.parametrize("alert", sorted(REQUIRED))
def test_unit_tests_fail_when_an_alert_never_fires(alert: str, tmp_path: Path) -> None:
    document = yaml.safe_load(ALERTS.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = "vector(1) == 0"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(document))
    shutil.copy(UNIT_TESTS, tmp_path / "alerts.test.yml")
    result = run([tool("promtool"), "test", "rules", tmp_path / "alerts.test.yml"])
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr


def test_alerts_use_only_the_service_metrics_and_are_documented() -> None:
    exposed = exposed_metric_names()
    runbook = (ROOT / "README.md").read_text()
    for rule in alerts():
        used = metric_names(str(rule["expr"]))
        assert used, rule["alert"]
        assert used <= exposed, (rule["alert"], used - exposed)
        assert f"`{rule['alert']}`" in runbook, f"{rule['alert']} has no runbook entry"
        labels = rule["labels"]
        assert isinstance(labels, dict)
        assert labels["severity"] in ("warning", "critical"), rule["alert"]


def test_prometheusrule_manifest_is_generated_from_the_rules_file() -> None:
    assert MANIFEST.read_text() == render(), "run `python -m tests.deploy.rules`"
